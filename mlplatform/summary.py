"""What ``mlplatform run`` prints when a run ends: the numbers a person wants, or why it failed."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from mlplatform.settings import Settings


def _metadata(result: dg.ExecuteJobResult | dg.ExecuteInProcessResult) -> dict[str, dict]:
    found = {}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        found[materialization.asset_key.to_user_string()] = {
            key: getattr(value, "value", value) for key, value in materialization.metadata.items()
        }
    return found


def render(result, definitions: dg.Definitions, instance: dg.DagsterInstance) -> str:
    metadata = _metadata(result)
    raw, cleaned = metadata["raw_data"], metadata["cleaned_data"]
    model, report = metadata["trained_model"], metadata["evaluation_report"]
    training, holdout = metadata["training_data"], metadata["holdout_data"]
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
    return f"""Run {result.run_id} succeeded.

  data        {raw["dagster/row_count"]} rows ingested from {raw["source"]}, data version {raw["data_version"]}
              {rows}
  model       {model["estimator"]} trained on {model["training_rows"]} rows
  holdout metrics ({report["holdout_rows"]} rows):
{metric_lines}
  report      {report["report_path"]}
  artifacts   {settings.artifact_root}
  instance    {instance.root_directory}

Open the UI on this instance:  {ui_command}     (then http://127.0.0.1:3000)"""


def failures(result) -> list[str]:
    """The error each failed step raised in our code, unwrapped from Dagster's "error in op" wrapper (its
    message already names the underlying cause)."""
    lines = []
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE":
            continue
        error = event.step_failure_data.error
        while error.cls_name.startswith("Dagster") and error.cause is not None:
            error = error.cause
        # The message reads "package.module.Class: text"; the class's short name is enough.
        text = error.message.strip().partition(f"{error.cls_name}: ")[2] or error.message.strip()
        lines.append(f"{event.step_key}: {error.cls_name}: {text}")
    return lines or ["no step failed; see the run's events in the UI"]
