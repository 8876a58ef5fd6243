"""Every trained model goes into the registry as a challenger; the promotion gate (checks.py) decides whether
it becomes the champion. A person can promote or roll back any version by hand (the promote_model job)."""

import getpass
from collections.abc import Iterator

import dagster as dg
import pandas as pd
from pydantic import Field

from mlplatform.defs.data.batches import latest_data_version
from mlplatform.lib.evaluation import evaluation
from mlplatform.lib.features import features
from mlplatform.lib.monitoring.reference import reference_sample
from mlplatform.lib.registry import promotion, registry
from mlplatform.lib.registry.registry import ModelVersion, Promotion
from mlplatform.lib.spec import ProjectSpec
from mlplatform.lib.training.training import TrainedModel
from mlplatform.resources import ModelRegistry, ProjectSpecResource


@dg.asset(group_name="registry", kinds={"bentoml"}, code_version="2")
def challenger_model(
    context: dg.AssetExecutionContext,
    trained_model: TrainedModel,
    evaluation_report: evaluation.Evaluation,
    training_data: pd.DataFrame,
    project: ProjectSpecResource,
    registry: ModelRegistry,
) -> dg.Output[ModelVersion]:
    """This run's model in BentoML's model store, with its lineage, training row ids and drift reference sample."""
    spec = project.load()
    schema = features.input_schema(
        trained_model.pipeline.named_steps["features"], training_data, spec, trained_model.classes
    )
    labels = registry_labels(context, spec, trained_model, evaluation_report)
    version = registry.for_project(spec.name).save(
        trained_model,
        schema=schema,
        labels=labels,
        metrics=evaluation_report.metrics,
        training_rows=features.RowIds.of(training_data, spec),
        reference=reference_sample(trained_model, training_data, schema),
    )
    context.log.info(f"Stored {version.tag} ({trained_model.estimator_name}) in {registry.bentoml_home}")
    return dg.Output(
        version,
        metadata={
            "tag": version.tag,
            "data_version": labels["data_version"],
            "code_version": labels["code_version"],
            "spec_hash": labels["spec_hash"],
            "training_rows": len(training_data),
            "labels": dg.MetadataValue.json(labels),
        },
    )


def registry_labels(
    context: dg.AssetExecutionContext, spec: ProjectSpec, model: TrainedModel, report: evaluation.Evaluation
) -> dict[str, str]:
    return registry.lineage_labels(
        spec=spec,
        data_version=latest_data_version(context.instance, "cleaned_data"),
        run_id=context.run.run_id,
        metrics=report.metrics,
        model=model,
    )


class ChampionChange(dg.Config):
    """Leave empty to promote the challenger that passed the gate; set to promote or roll back by hand."""

    tag: str = Field(default="", description="A stored version (project:version) to make champion by hand.")
    rollback: bool = Field(default=False, description="Restore the champion before the current one (or `tag`).")
    reason: str = Field(default="", description="Why: recorded with the change (required by hand).")
    requested_by: str = Field(default="", description="Who asked for it (default: the user running the step).")


# Not materialized when the gate keeps the champion: nothing downstream (the bento, the server) runs, and the
# run still succeeds; the verdict is the gate check's result and this asset's observation.
@dg.asset(group_name="registry", kinds={"bentoml"}, code_version="1", output_required=False)
def champion_model(
    context: dg.AssetExecutionContext,
    config: ChampionChange,
    challenger_model: ModelVersion,
    holdout_data: pd.DataFrame,
    project: ProjectSpecResource,
    registry: ModelRegistry,
) -> Iterator[dg.Output[Promotion] | dg.AssetObservation]:
    """The model that serves: the challenger once it passes the promotion gate, or a version chosen by hand."""
    spec = project.load()
    models = registry.for_project(spec.name)
    by = config.requested_by or getpass.getuser()
    if config.tag or config.rollback:
        tag = config.tag or models.rollback_target()
        kind = "rollback" if config.rollback else "manual"
        change = models.promote(tag, kind=kind, by=by, reason=config.reason, run_id=context.run.run_id)
    else:
        verdict = promotion.gate(challenger_model, holdout_data, spec, models)
        if not verdict.promote:
            champion = verdict.champion_tag or "(none)"
            context.log.info(f"Champion stays {champion}; {challenger_model.tag} is not promoted: {verdict.summary}")
            yield dg.AssetObservation(
                asset_key=context.asset_key,
                description=verdict.summary,
                metadata={
                    "verdict": "keep the champion",
                    "challenger": challenger_model.tag,
                    "champion": verdict.champion_tag or "",
                    "reason": verdict.summary,
                },
            )
            return
        change = models.promote(
            challenger_model.tag,
            kind="gate",
            by=f"promotion gate ({by})",
            reason=verdict.summary,
            run_id=context.run.run_id,
            evidence={
                "challenger": verdict.challenger,
                "champion": verdict.champion,
                **({"rows": verdict.rows.metadata()} if verdict.rows else {}),
            },
        )
    serving = models.version(change.tag)
    context.log.info(f"Champion is now {change.tag} (was {change.previous}): {change.kind} by {change.by}")
    yield dg.Output(
        change,
        metadata={
            "tag": change.tag,
            "previous": change.previous or "",
            "kind": change.kind,
            "by": change.by,
            "reason": change.reason,
            "data_version": serving.labels.get("data_version", ""),
            **{f"holdout_{name}": round(value, 4) for name, value in serving.metrics.items()},
        },
    )
