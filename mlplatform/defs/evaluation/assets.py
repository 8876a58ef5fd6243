import dagster as dg
import pandas as pd

from mlplatform.lib import evaluation
from mlplatform.lib.training import TrainedModel
from mlplatform.resources import ArtifactStore, ProjectSpecResource


@dg.asset(group_name="evaluation", kinds={"scikitlearn", "matplotlib"}, code_version="1")
def evaluation_report(
    context: dg.AssetExecutionContext,
    trained_model: TrainedModel,
    holdout_data: pd.DataFrame,
    project: ProjectSpecResource,
    artifacts: ArtifactStore,
) -> dg.Output[evaluation.Evaluation]:
    """Holdout metrics, plots and feature importance for the trained model, as metadata and a Markdown report."""
    spec = project.load()
    result = evaluation.evaluate(trained_model, holdout_data, spec)
    folder = ("reports", spec.name, context.run.run_id)
    for name, png in result.plots.items():
        artifacts.write_bytes(png, *folder, f"{name}.png")
    report = evaluation.render_report(result, spec, trained_model, {n: f"![{n}]({n}.png)" for n in result.plots})
    report_path = artifacts.write_bytes(report.encode(), *folder, "report.md")
    context.log.info(f"Holdout {result.primary_metric} = {result.primary_value:.4f}; report at {report_path}")
    inline = evaluation.render_report(
        result, spec, trained_model, {n: evaluation.image_markdown(n, png) for n, png in result.plots.items()}
    )
    return dg.Output(
        result,
        metadata={
            **{f"holdout_{name}": value for name, value in result.metrics.items()},
            "primary_metric": result.primary_metric,
            "holdout_rows": result.holdout_rows,
            "report": dg.MetadataValue.md(inline),
            "report_path": dg.MetadataValue.path(report_path),
            **{name: dg.MetadataValue.md(evaluation.image_markdown(name, png)) for name, png in result.plots.items()},
        },
    )
