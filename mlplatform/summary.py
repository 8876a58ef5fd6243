"""What ``mlplatform run`` prints when it ends: the numbers a person wants, or why it failed."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from mlplatform.settings import Settings


def latest_metadata(instance: dg.DagsterInstance, key: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    if event is None or event.asset_materialization is None:
        return {}
    return {name: getattr(value, "value", value) for name, value in event.asset_materialization.metadata.items()}


def render(instance: dg.DagsterInstance, run_ids: list[str], rejected: list[str]) -> str:
    """The state of the project after these runs, from the instance's latest materializations."""
    raw, accepted = latest_metadata(instance, "raw_batch"), latest_metadata(instance, "accepted_data")
    cleaned = latest_metadata(instance, "cleaned_data")
    training, holdout = latest_metadata(instance, "training_data"), latest_metadata(instance, "holdout_data")
    model, report = latest_metadata(instance, "trained_model"), latest_metadata(instance, "evaluation_report")
    settings = Settings.from_env()
    primary = report["primary_metric"]
    ui_command = "uv run mlplatform dev"
    if settings.home != Path(".mlplatform").resolve():
        ui_command += f" --home {settings.home}"
    marker = {f"holdout_{primary}": "   <- optimised"}
    metric_lines = "\n".join(
        f"    {name.removeprefix('holdout_'):<18} {value:.4f}{marker.get(name, '')}"
        for name, value in report.items()
        if name.startswith("holdout_") and name != "holdout_rows"
    )
    rows = f"{cleaned['dagster/row_count']} rows after cleaning; "
    rows += f"{training['dagster/row_count']} training / {holdout['dagster/row_count']} holdout"
    training_data = f"{accepted['dagster/row_count']} rows from {accepted['batches']} accepted batch(es), "
    training_data += f"data version {accepted['data_version']}"
    quality = "every batch passed its checks" if not rejected else f"{len(rejected)} batch(es) REJECTED:"
    rejected_lines = "".join(f"\n    {part}" for line in rejected for part in line.splitlines())
    return f"""{len(run_ids)} run(s) succeeded: {", ".join(run_ids)}

  last batch    {raw.get("batch", "?")}: {raw.get("dagster/row_count", "?")} rows, batch {raw.get("batch_id", "?")}
  training data {training_data}
                {rows}
  quality       {quality}{rejected_lines}
  model         {model["estimator"]} trained on {model["training_rows"]} rows
  holdout metrics ({report["holdout_rows"]} rows):
{metric_lines}
  report        {report["report_path"]}
  artifacts     {settings.artifact_root}
  instance      {instance.root_directory}

Open the UI on this instance:  {ui_command}     (then http://127.0.0.1:3000)"""


def failures(result) -> list[str]:
    """Why a run failed: each failed check's findings, and the error each failed step raised in our code,
    unwrapped from Dagster's "error in op" wrapper (its message already names the underlying cause)."""
    lines = []
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
                lines.append(f"check {evaluation.check_name} failed: {evaluation.description}".replace("\n", "\n    "))
                quarantine = evaluation.metadata.get("quarantine")
                if quarantine is not None:
                    lines.append(f"  the batch is kept in quarantine at {quarantine.value}")
                docs = evaluation.metadata.get("data_docs")
                if docs is not None:
                    lines.append(f"  Great Expectations Data Docs: {docs.value}")
        if event.event_type_value != "STEP_FAILURE":
            continue
        error = event.step_failure_data.error
        if error.cls_name == "DagsterAssetCheckFailedError":
            continue  # the check's own findings are listed above
        while error.cls_name.startswith("Dagster") and error.cause is not None:
            error = error.cause
        # The message reads "package.module.Class: text"; the class's short name is enough.
        text = error.message.strip().partition(f"{error.cls_name}: ")[2] or error.message.strip()
        lines.append(f"{event.step_key}: {error.cls_name}: {text}")
    return lines or ["no step failed; see the run's events in the UI"]
