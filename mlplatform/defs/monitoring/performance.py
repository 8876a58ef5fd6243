"""How well the champion does on the predictions it served, once their labels have landed."""

import dagster as dg

from mlplatform.defs.monitoring import GROUP, PERFORMANCE_ASSET, RETRAIN, RETRAIN_REASON
from mlplatform.lib.monitoring import labels as label_files
from mlplatform.lib.monitoring import performance
from mlplatform.resources import ModelRegistry, PredictionLogFolder, ProjectSpecResource

NOT_DECAYED = "performance_has_not_decayed"
LABELS_READABLE = "label_files_are_readable"


@dg.asset(
    name=PERFORMANCE_ASSET,
    group_name=GROUP,
    kinds={"pandas", "scikitlearn"},
    deps=["champion_model"],
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
    prediction_log: PredictionLogFolder,
) -> dg.MaterializeResult:
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
        log=prediction_log.read(spec.name),
        labels=labels,
    )
    for problem in report.problems:
        context.log.warning(f"label file left out: {problem}")
    (context.log.warning if report.decayed else context.log.info)(report.verdict)
    return dg.MaterializeResult(
        metadata=metadata(report, labels),
        check_results=[
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
        ],
    )


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
