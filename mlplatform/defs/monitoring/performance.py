"""How well the champion does on the predictions it served, once their labels have landed
(``mlplatform.lib.monitoring.performance``). Without a verdict (too few labels, no champion, no labels configured)
nothing is materialized and no number is made up: an observation says why. Both checks run either way, so a
label file that cannot be read is reported even while it keeps the verdict away."""

from collections.abc import Iterator

import dagster as dg

from mlplatform.defs.monitoring import GROUP, PERFORMANCE_ASSET, RETRAIN, RETRAIN_REASON
from mlplatform.lib.monitoring import labels as label_files
from mlplatform.lib.monitoring import performance
from mlplatform.resources import ModelRegistry, ProjectSpecResource
from mlplatform.resources.predictions import PredictionLogs

NOT_DECAYED = "performance_has_not_decayed"
LABELS_READABLE = "label_files_are_readable"


@dg.asset(
    name=PERFORMANCE_ASSET,
    group_name=GROUP,
    kinds={"pandas", "scikitlearn"},
    deps=["champion_model"],
    code_version="1",
    output_required=False,
    check_specs=[
        dg.AssetCheckSpec(
            NOT_DECAYED,
            asset=PERFORMANCE_ASSET,
            description="Warns (never blocks) when the live primary metric is worse than the champion's holdout "
            "metric by more than monitoring.max_decay.",
        ),
        dg.AssetCheckSpec(
            LABELS_READABLE,
            asset=PERFORMANCE_ASSET,
            description="Warns of label files, or parts of them, left out: the file, the column and why.",
        ),
    ],
)
def live_performance(
    context: dg.AssetExecutionContext,
    project: ProjectSpecResource,
    registry: ModelRegistry,
    prediction_logs: PredictionLogs,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """The champion's primary metric on its labelled predictions against its holdout metric; decay asks to retrain."""
    spec = project.load()
    models = registry.for_project(spec.name)
    pointer = models.champion()
    champion = pointer.tag if pointer else None
    labels = label_files.read_labels(spec) if spec.monitoring.labels is not None else None
    report = performance.assess(
        spec,
        champion=champion,
        holdout_metrics=models.version(champion).metrics if champion else {},
        log=prediction_logs.read(spec.name),
        labels=labels,
    )
    for problem in report.problems:
        context.log.warning(f"label file left out: {problem}")
    (context.log.warning if report.decayed else context.log.info)(report.verdict)
    checks = [
        dg.AssetCheckResult(
            check_name=NOT_DECAYED,
            passed=not report.decayed,
            severity=dg.AssetCheckSeverity.WARN,
            description=report.verdict,
            metadata={"champion": report.champion or "", "verdict": report.verdict, **_numbers(report)},
        ),
        dg.AssetCheckResult(
            check_name=LABELS_READABLE,
            passed=not report.problems,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{len(report.problems)} label file problem(s)" if report.problems else "every label read",
            metadata={"problems": dg.MetadataValue.md(_bullets(report.problems) or "none")},
        ),
    ]
    if report.no_verdict:
        context.log_event(dg.AssetObservation(asset_key=context.asset_key, metadata=metadata(report, labels)))
        yield from checks
        return
    yield dg.MaterializeResult(metadata=metadata(report, labels), check_results=checks)


def metadata(report: performance.Performance, labels: label_files.Labels | None) -> dict:
    """What the UI shows and plots (the numbers, one point per materialization), and what the retraining
    sensor reads (RETRAIN, RETRAIN_REASON)."""
    return {
        "verdict": report.verdict,
        "champion": report.champion or "",
        "metric": report.metric,
        **_numbers(report),
        "unmatched_labels": report.unmatched_labels,
        "label_files": labels.files if labels else 0,
        "joined_by": labels.by if labels else "",
        "max_decay": report.max_decay if report.max_decay is not None else "not set",
        RETRAIN: report.decayed,
        RETRAIN_REASON: report.retrain_reason,
        **({"label_problems": dg.MetadataValue.md(_bullets(report.problems))} if report.problems else {}),
    }


def _numbers(report: performance.Performance) -> dict[str, float | int]:
    values = {
        "live_metric": report.live,
        "holdout_metric": report.holdout,
        "decay": report.decay,
        "coverage": report.coverage,
    }
    rounded = {name: round(value, 4) for name, value in values.items() if value is not None}
    return {**rounded, "labelled_predictions": report.labelled, "logged_predictions": report.predictions}


def _bullets(lines: tuple[str, ...]) -> str:
    return "\n".join(f"- {line}" for line in lines)
