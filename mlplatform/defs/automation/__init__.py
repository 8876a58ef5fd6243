"""What starts runs without a person: sensors, schedules and alerts, each switchable in the UI."""

REASON_TAG = "mlplatform/reason"  # on every automatic run: new-data, schedule, drift, decay
