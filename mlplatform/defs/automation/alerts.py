"""Alert sensors: a failed run, a failed asset check and a stale asset each send one alert (a webhook, when
MLPLATFORM_ALERT_WEBHOOK is set, and a JSON line in the structured log), with the run, asset, model tag and a
link to the UI. They start RUNNING: they only speak when something is wrong.

- ``run_failure_alerts``: a failed run. Each failed check in it is an alert of its own, and the run's failure
  is one more unless the run failed only because a blocking check did (a rejected batch is one alert, not two).
- ``check_alerts``: each failed check of a successful run: a warning (the promotion gate keeping the champion,
  a suspected leak), a monitor's verdict (drift, decay).
- ``freshness_alerts``: an asset whose freshness policy turned FAIL (the freshness daemon decides; see
  ``mlplatform.defs.monitoring.freshness``).

Exactly once: a run ends once, as a success or a failure, and each run status sensor keeps a cursor in the
instance past the runs it has handled; the freshness sensor keeps the time of each asset's last state change
it handled. A daemon restart resumes from the cursors. Runs from every code location and from ``mlplatform
run`` are watched: one instance is one platform home.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime

import dagster as dg

from mlplatform.defs.logs import model_tag_in, step_node
from mlplatform.lib.logs import json_lines_logger
from mlplatform.lib.monitoring.alerts import Alert, Webhook
from mlplatform.resources.local_server import TOKEN_FILE
from mlplatform.settings import Settings

RUN_FAILURE_ALERTS, CHECK_ALERTS, FRESHNESS_ALERTS = "run_failure_alerts", "check_alerts", "freshness_alerts"
CHECK_FAILED = "DagsterAssetCheckFailedError"  # what a step raises when its blocking check failed


class Alerter:
    """Sends alerts for one platform's settings: POSTed to its webhook, if any, and logged as JSON lines."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # One sender for the code location's life: a receiver found down gets a single try per later alert
        # until it answers again, so that a tick with many alerts still ends within the sensor's time limit.
        self.webhook = Webhook(settings.alert_webhook) if settings.alert_webhook else None
        self.logger = json_lines_logger("mlplatform.alerts", settings.log_path, stdout=settings.log_format == "json")

    def secrets(self) -> list[str | None]:
        """What must never leave in an alert: the webhook URL, the API token, the local server's own token."""
        token_file = self.settings.deployment_home / TOKEN_FILE
        generated = token_file.read_text().strip() if token_file.is_file() else None
        return [self.settings.alert_webhook, self.settings.api_token, generated]

    def send(self, alerts: Iterable[Alert], log: logging.Logger) -> None:
        """Each alert to the webhook, if any, and to the log; never raises for a receiver's failure."""
        webhook, secrets = self.webhook, self.secrets()
        for alert in alerts:
            alert = alert.redacted(secrets)
            delivery = webhook.post(alert.payload()) if webhook else None
            outcome = delivery.log_fields() if delivery else {"delivered": None, "webhook": "not set"}
            level = logging.ERROR if alert.severity == "error" else logging.WARNING
            self.logger.log(level, alert.title, extra={**alert.log_fields(), **outcome})
            if delivery is None:
                log.info(f"alert (no webhook set, logged only): {alert.title}")
            elif delivery.delivered:
                log.info(f"alert sent after {delivery.attempts} attempt(s): {alert.title}")
            else:
                log.warning(
                    f"alert NOT delivered after {delivery.attempts} attempt(s), {delivery.error}: {alert.title}"
                )


def alert_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    alerter = Alerter(settings)

    @dg.run_failure_sensor(
        name=RUN_FAILURE_ALERTS,
        monitor_all_code_locations=True,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts on each failed run: its failed checks, and why it failed (webhook and JSON log).",
    )
    def run_failure_alerts(context: dg.RunFailureSensorContext) -> None:
        run = context.dagster_run
        alerts = failed_check_alerts(context.instance, run, settings.ui_url)
        failure = run_failure_alert(context.instance, run, context.failure_event, settings.ui_url)
        alerter.send([*alerts, *([failure] if failure else [])], context.log)

    @dg.run_status_sensor(
        name=CHECK_ALERTS,
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitor_all_code_locations=True,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts on each failed check of a successful run: the gate keeping the champion, a "
        "warning, drift or decay (webhook and JSON log).",
    )
    def check_alerts(context: dg.RunStatusSensorContext) -> None:
        alerter.send(failed_check_alerts(context.instance, context.dagster_run, settings.ui_url), context.log)

    @dg.sensor(
        name=FRESHNESS_ALERTS,
        minimum_interval_seconds=30,  # as often as the run status sensors look; the freshness daemon, as well
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts when an asset's freshness policy fails: no new materialization within its window.",
    )
    def freshness_alerts(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        alerts, cursor = stale_asset_alerts(context.instance, context.repository_def, context.cursor, settings.ui_url)
        alerter.send(alerts, context.log)
        return dg.SensorResult(cursor=cursor, skip_reason=f"{len(alerts)} stale asset(s) alerted")

    return [run_failure_alerts, check_alerts, freshness_alerts]


def run_url(ui_url: str, run_id: str) -> str:
    return f"{ui_url}/runs/{run_id}"


def failed_check_alerts(instance: dg.DagsterInstance, run: dg.DagsterRun, ui_url: str) -> list[Alert]:
    """One alert per check of the run that did not pass, whatever its severity."""
    alerts = []
    for evaluation in _run_events(instance, run.run_id, dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        if evaluation.passed:
            continue
        asset = evaluation.asset_key.to_user_string()
        blocking = evaluation.severity == dg.AssetCheckSeverity.ERROR
        alerts.append(
            Alert(
                kind="check_failed",
                severity="error" if blocking else "warning",
                title=f"{asset}: check {evaluation.check_name} did not pass"
                + ("" if blocking else " (warning: nothing was blocked)"),
                details=evaluation.description or "(no description)",
                run_id=run.run_id,
                job=run.job_name,
                asset=asset,
                check=evaluation.check_name,
                model_tag=model_tag(instance, run.run_id, evaluation.metadata),
                url=run_url(ui_url, run.run_id),
            )
        )
    return alerts


def run_failure_alert(
    instance: dg.DagsterInstance, run: dg.DagsterRun, failure: dg.DagsterEvent | None, ui_url: str
) -> Alert | None:
    """Why the run failed: each step that raised, with its error. None when its only failures are blocking
    checks that failed, each already an alert of its own."""
    failed_steps = [
        record.event_log_entry.dagster_event
        for record in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    ]
    raised = [step for step in failed_steps if step.step_failure_data.error.cls_name != CHECK_FAILED]
    if failed_steps and not raised:
        return None
    assets = _step_assets(instance, run.run_id)
    if raised:
        lines = [f"{step.step_key}: {_error_text(step.step_failure_data.error)}" for step in raised]
        failed = sorted({assets.get(step_node(step.step_key), step.step_key) for step in raised})
    else:  # the run failed around its steps: it could not start, or its process died
        error = getattr(failure.event_specific_data, "error", None) if failure else None
        lines = [failure.message if failure and failure.message else "the run failed before any step did"]
        lines += [_error_text(error)] if error else []
        failed = []
    return Alert(
        kind="run_failure",
        severity="error",
        title=f"Run of {run.job_name} failed" + (f" at {', '.join(failed)}" if failed else ""),
        details="\n".join(lines),
        run_id=run.run_id,
        job=run.job_name,
        asset=", ".join(failed) or None,
        model_tag=model_tag(instance, run.run_id),
        url=run_url(ui_url, run.run_id),
    )


def stale_asset_alerts(
    instance: dg.DagsterInstance, repository: dg.RepositoryDefinition, cursor: str | None, ui_url: str
) -> tuple[list[Alert], str]:
    """An alert for each asset whose freshness state changed to FAIL since the cursor (the time of each asset's
    last state change handled), and the new cursor. A FAIL already current when the sensor first looks is
    alerted too: it is a present problem, not history."""
    graph = repository.asset_graph
    policies = {key: graph.get(key).freshness_policy for key in graph.get_all_asset_keys()}
    policies = {key: policy for key, policy in policies.items() if policy is not None}
    handled: dict[str, float] = json.loads(cursor) if cursor else {}
    alerts = []
    # The freshness daemon's latest state per asset (FRESHNESS_STATE_CHANGE events): no public API reads
    # them otherwise in Dagster 1.13.
    for key, record in instance.get_freshness_state_records(list(policies)).items():
        name, changed = key.to_user_string(), record.updated_at.timestamp()
        if handled.get(name, float("-inf")) >= changed:
            continue
        handled[name] = changed
        if record.freshness_state != "FAIL":
            continue
        latest = instance.get_latest_materialization_event(key)
        when = f"last materialized {_utc(latest.timestamp)} by run {latest.run_id}" if latest else "never materialized"
        window = getattr(policies[key], "fail_window", None)
        expected = f"expected within {window.to_timedelta()}" if window is not None else "its freshness policy"
        alerts.append(
            Alert(
                kind="freshness",
                severity="error",
                title=f"{name} is stale",
                details=f"{name} failed its freshness policy at {_utc(changed)}: {when}, {expected}.",
                asset=name,
                model_tag=model_tag(instance, None),  # the champion that serves, stale data or not
                url=f"{ui_url}/assets/{'/'.join(key.path)}",
            )
        )
    return alerts, json.dumps(handled, sort_keys=True)


def model_tag(instance: dg.DagsterInstance, run_id: str | None, metadata: dict | None = None) -> str | None:
    """The model an alert concerns: the one a check names (the gate's challenger, a monitor's model), else
    the one the run stored or promoted, else the champion that serves."""
    for name in ("model_tag", "challenger"):
        if metadata and name in metadata:
            return str(getattr(metadata[name], "value", metadata[name]))
    if run_id:
        for materialization in reversed(_run_events(instance, run_id, dg.DagsterEventType.ASSET_MATERIALIZATION)):
            found = model_tag_in(materialization.materialization)
            if found:
                return found
    champion = instance.get_latest_materialization_event(dg.AssetKey("champion_model"))
    return model_tag_in(champion.asset_materialization) if champion and champion.asset_materialization else None


def _run_events(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType) -> list:
    return [
        record.event_log_entry.dagster_event.event_specific_data
        for record in instance.get_records_for_run(run_id, of_type=kind).records
    ]


def _step_assets(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """The assets (or checked assets) each top-level node of the run was to produce, from its planned events."""
    planned = {
        dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
    }
    found: dict[str, set[str]] = {}
    for record in instance.get_records_for_run(run_id, of_type=planned).records:
        event = record.event_log_entry.dagster_event
        key = event.asset_key or getattr(event.event_specific_data, "asset_key", None)
        if event.step_key and key is not None:
            found.setdefault(step_node(event.step_key), set()).add(key.to_user_string())
    return {node: ", ".join(sorted(assets)) for node, assets in found.items()}


def _error_text(error) -> str:
    """The error our code raised, out of Dagster's "error occurred while executing" wrappers; its message reads
    "package.module.Class: text", of which the class's short name is enough."""
    while error.cls_name.startswith("Dagster") and error.cause is not None:
        error = error.cause
    message = error.message.strip()
    return f"{error.cls_name}: {message.partition(f'{error.cls_name}: ')[2] or message}"


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
