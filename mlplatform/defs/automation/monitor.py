"""The monitoring sensor: refresh the monitoring assets (drift, live performance) every
``monitoring.every_minutes``, when the served model logged new predictions since the last refresh.

It looks every ``automation.sensor_seconds`` and reads the spec each time, so a changed interval applies at the
next look; whether it starts on or off is ``automation.monitor``, and the UI's toggle switches it either way.
Its cursor holds the newest log file seen at the last launch and when that was."""

import json
import time

import dagster as dg

from mlplatform.lib.spec import Automation
from mlplatform.resources import ProjectSpecResource
from mlplatform.resources.predictions import PredictionLogs

MONITOR_JOB = "monitor"
MONITOR_SENSOR = "monitor_on_new_predictions"
TRIGGER_TAG = "mlplatform/monitor_trigger"  # the newest log file the run was launched for


def monitor_sensor(automation: Automation) -> dg.SensorDefinition:

    @dg.sensor(
        name=MONITOR_SENSOR,
        job_name=MONITOR_JOB,
        minimum_interval_seconds=automation.sensor_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING if automation.monitor else dg.DefaultSensorStatus.STOPPED,
        description="Refreshes drift and live performance every monitoring.every_minutes, when new predictions "
        "were logged (on or off at start: automation.monitor).",
    )
    def sensor(
        context: dg.SensorEvaluationContext, project: ProjectSpecResource, prediction_logs: PredictionLogs
    ) -> dg.SensorResult | dg.SkipReason:
        spec = project.load()
        cursor = json.loads(context.cursor) if context.cursor else {}
        newest = prediction_logs.newest_file(spec.name)
        if newest is None:
            return dg.SkipReason(f"no prediction of {spec.name!r} logged yet in {prediction_logs.folder}")
        if newest == cursor.get("file"):
            return dg.SkipReason(f"no prediction logged since the last refresh ({newest})")
        interval = spec.monitoring.every_minutes * 60
        waited = time.time() - cursor.get("launched_at", 0.0)
        if waited < interval:
            return dg.SkipReason(
                f"new predictions; the next refresh is due in {interval - waited:.0f} s "
                f"(monitoring.every_minutes: {spec.monitoring.every_minutes:g})"
            )
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=f"monitor:{newest}", tags={TRIGGER_TAG: newest})],
            cursor=json.dumps({"file": newest, "launched_at": time.time()}),
        )

    return sensor
