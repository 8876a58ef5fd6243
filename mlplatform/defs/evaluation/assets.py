import dagster as dg
import pandas as pd
from sklearn.compose import ColumnTransformer

from mlplatform.lib.evaluation import evaluation
from mlplatform.lib.evaluation.plots import image_markdown
from mlplatform.lib.quality import leakage
from mlplatform.lib.training.candidates import TunedCandidate
from mlplatform.lib.training.training import TrainedModel
from mlplatform.resources import ArtifactStore, ProjectSpecResource


@dg.asset(group_name="evaluation", kinds={"scikitlearn", "matplotlib"}, code_version="3")
def evaluation_report(
    context: dg.AssetExecutionContext,
    trained_model: TrainedModel,
    candidate_models: dict[str, TunedCandidate],
    feature_pipeline: ColumnTransformer,
    training_data: pd.DataFrame,
    holdout_data: pd.DataFrame,
    project: ProjectSpecResource,
    artifacts: ArtifactStore,
) -> dg.Output[evaluation.Evaluation]:
    """Holdout metrics, calibration, slices, every candidate compared, plots, importance, leakage warnings."""
    spec = project.load()
    result = evaluation.evaluate(trained_model, holdout_data, spec, candidate_models, feature_pipeline)
    # The same seeded scan as the features check's, so the report names what the check warned of.
    result.leakage = leakage.scan(training_data, spec, list(feature_pipeline.feature_names_in_))
    for leak in result.leakage.leaks:
        context.log.warning(
            f"Leakage warning: {leak.feature!r} alone predicts the target ({leak.metric} {leak.score:.4f})"
        )
    folder = ("reports", spec.name, context.run.run_id)
    for name, png in result.plots.items():
        artifacts.write_bytes(png, *folder, f"{name}.png")
    report = evaluation.render_report(result, spec, trained_model, {n: f"![{n}]({n}.png)" for n in result.plots})
    report_path = artifacts.write_bytes(report.encode(), *folder, "report.md")
    context.log.info(f"Holdout {result.primary_metric} = {result.primary_value:.4f}; report at {report_path}")
    inline = evaluation.render_report(
        result, spec, trained_model, {n: image_markdown(n, png) for n, png in result.plots.items()}
    )
    tables = {"candidates": result.candidates, "slices": result.slices}
    return dg.Output(
        result,
        metadata={
            # Rounded as the tables are, for people; the registry stores the exact values the gate compares,
            # and "metrics" keeps them for programs that compare runs.
            **{f"holdout_{name}": round(value, 4) for name, value in result.metrics.items()},
            "metrics": dg.MetadataValue.json(result.metrics),
            "primary_metric": result.primary_metric,
            "holdout_rows": result.holdout_rows,
            "leakage_warning": dg.MetadataValue.json([leak.feature for leak in result.leakage.leaks]),
            **{
                name: dg.MetadataValue.md(table.to_markdown(index=False, floatfmt=".4f"))
                for name, table in tables.items()
                if not table.empty
            },
            "report": dg.MetadataValue.md(inline),
            "report_path": dg.MetadataValue.path(report_path),
            **{name: dg.MetadataValue.md(image_markdown(name, png)) for name, png in result.plots.items()},
        },
    )
