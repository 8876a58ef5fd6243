"""Drift of the served model's inputs and predictions: the prediction log's last window against the reference
sample the champion was trained on (``mlplatform.lib.monitoring.drift``). The report asks for retraining in its
metadata (``RETRAIN``), and its check fails, as a warning, when it does."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg

from mlplatform.defs.monitoring import DRIFT_ASSET, GROUP, RETRAIN, RETRAIN_REASON
from mlplatform.lib.evaluation.plots import image_markdown
from mlplatform.lib.monitoring import drift, plots
from mlplatform.lib.monitoring.drift import DriftReport
from mlplatform.lib.monitoring.reference import PREDICTION
from mlplatform.resources import ModelRegistry, ProjectSpecResource
from mlplatform.resources.predictions import PredictionLogs

MAX_OVERLAYS = 12  # distribution plots in one report: the drifted columns with the largest PSI
VERDICT = "verdict"


@dg.asset(
    name=DRIFT_ASSET,
    group_name=GROUP,
    deps=["champion_model"],
    kinds={"scipy", "matplotlib"},
    code_version="1",
    output_required=False,
)
def prediction_drift(
    context: dg.AssetExecutionContext,
    project: ProjectSpecResource,
    registry: ModelRegistry,
    prediction_logs: PredictionLogs,
) -> Iterator[dg.Output[DriftReport]]:
    """The served inputs and predictions of the last window against what the champion was trained on."""
    spec = project.load()
    settings = spec.monitoring.drift
    models = registry.for_project(spec.name)
    champion = models.champion()
    if champion is None:
        yield from _no_verdict(context, f"project {spec.name!r} has no champion yet: nothing serves to compare")
        return
    reference = models.reference(champion.tag)
    if reference is None:
        yield from _no_verdict(
            context,
            f"{champion.tag} was stored before model versions kept a reference sample: no reference to compare "
            "with (the next model trained will have one)",
            champion.tag,
        )
        return
    columns = drift.columns_of(models.schema(champion.tag))
    since = datetime.now(UTC) - timedelta(hours=settings.window_hours)
    logged = prediction_logs.read(spec.name, since=since, columns=[c.name for c in columns] + ["model_tag"])
    served = logged[logged["model_tag"] == champion.tag] if len(logged) else logged
    context.log.info(
        f"{len(served)} of {len(logged)} predictions logged since {since:%Y-%m-%d %H:%M} UTC were served by "
        f"{champion.tag}; comparing them with its {len(reference)}-row reference sample"
    )
    report = drift.compare(reference, served, columns, settings, champion.tag)
    if report.no_verdict:
        yield from _no_verdict(context, report.no_verdict, champion.tag)
        return
    for column in report.drifted:
        context.log.warning(f"Drift in {column.name} ({column.role}): {column.why}")
    if report.retrain:
        context.log.warning(f"Retraining asked for: {report.reason}")
    overlays = {
        column.name: plots.overlay_png(column, reference[column.name], served[column.name])
        for column in sorted(report.drifted, key=lambda column: -column.psi)[:MAX_OVERLAYS]
    }
    yield dg.Output(report, metadata=_metadata(report, since, overlays))


def _verdict(report: DriftReport) -> str:
    if report.retrain:
        return f"drift: retraining asked for ({report.reason})"
    if report.drifted:
        names = ", ".join(column.name for column in report.drifted)
        return f"drift in {names}, below what asks for retraining"
    return "no drift"


def _metadata(report: DriftReport, since: datetime, overlays: dict[str, bytes]) -> dict[str, object]:
    def largest(statistic: str) -> float:
        values = [getattr(column, statistic) for column in report.columns]
        return max((value for value in values if value is not None), default=0.0)

    prediction = next(column for column in report.columns if column.name == PREDICTION)
    return {
        VERDICT: _verdict(report),
        "model_tag": report.model_tag,
        "window_start": since.isoformat(timespec="seconds"),
        # numbers the UI plots over time, one point per report
        "rows": report.rows,
        "reference_rows": report.reference_rows,
        "drifted_share": dg.MetadataValue.float(round(report.drifted_share, 4)),
        "drifted_columns": len(report.drifted),
        "max_psi": dg.MetadataValue.float(round(largest("psi"), 4)),
        "max_ks": dg.MetadataValue.float(round(largest("ks"), 4)),
        "max_cramers_v": dg.MetadataValue.float(round(largest("cramers_v"), 4)),
        "prediction_psi": dg.MetadataValue.float(round(prediction.psi, 4)),
        "drifted": dg.MetadataValue.json([column.name for column in report.drifted]),
        "drift_table": dg.MetadataValue.md(report.table().to_markdown(index=False)),
        RETRAIN: report.retrain,
        RETRAIN_REASON: report.reason,
        **{f"overlay {name}": dg.MetadataValue.md(image_markdown(name, png)) for name, png in overlays.items()},
    }


def _no_verdict(context: dg.AssetExecutionContext, why: str, model_tag: str = "") -> Iterator[dg.Output]:
    """Nothing is materialized (no number is made up): an observation says why, and the check does not run."""
    context.log.info(f"No drift verdict: {why}")
    context.log_event(
        dg.AssetObservation(
            asset_key=context.asset_key,
            metadata={VERDICT: f"no verdict: {why}", "model_tag": model_tag, RETRAIN: False, RETRAIN_REASON: ""},
        )
    )
    yield from ()


@dg.asset_check(
    asset=DRIFT_ASSET,
    blocking=False,
    description="Warns when the served inputs or predictions drifted enough to ask for retraining.",
)
def inputs_have_not_drifted(prediction_drift: DriftReport) -> dg.AssetCheckResult:
    drifted = [column.name for column in prediction_drift.drifted]
    return dg.AssetCheckResult(
        passed=not prediction_drift.retrain,
        severity=dg.AssetCheckSeverity.WARN,
        description=_verdict(prediction_drift),
        metadata={
            "model_tag": prediction_drift.model_tag,
            "drifted": dg.MetadataValue.json(drifted),
            "drifted_share": dg.MetadataValue.float(round(prediction_drift.drifted_share, 4)),
            RETRAIN_REASON: prediction_drift.reason,
        },
    )
