"""The drift monitor through Dagster: a real registry (a champion with its reference sample), a real prediction log
written by ``PredictionLog`` from the model's own answers, the monitor job, its check and its sensor."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from mlplatform.definitions import build_definitions, build_resources, run_config
from mlplatform.defs.automation.monitor import MONITOR_JOB, MONITOR_SENSOR, TRIGGER_TAG
from mlplatform.defs.monitoring import DRIFT_ASSET, RETRAIN, RETRAIN_REASON
from mlplatform.lib.data import cleaning, synthetic
from mlplatform.lib.registry import registry
from mlplatform.lib.registry.registry import Registry
from mlplatform.lib.serving.prediction_log import PredictionLog
from mlplatform.lib.serving.serving import ModelRunner, request_rows
from mlplatform.resources.model_store import BentoMLStore
from mlplatform.resources.predictions import PredictionLogs
from mlplatform.settings import Settings
from mlplatform_tests.conftest import BENTOML_HOME
from mlplatform_tests.models import fitted, save_version

DRIFT_SETTINGS = {"min_rows": 100, "window_hours": 1}


class Monitored:
    """A home with a champion stored and promoted as the graph does, and its prediction log."""

    def __init__(self, tmp_path: Path, write_spec, **drift: object) -> None:
        self.spec_path = write_spec(monitoring={"drift": {**DRIFT_SETTINGS, **drift}})
        self.settings = Settings.from_env(
            {
                "MLPLATFORM_HOME": str(tmp_path / "home"),
                "MLPLATFORM_SPEC": str(self.spec_path),
                "MLPLATFORM_DEPLOY": "none",
                "BENTOML_HOME": str(BENTOML_HOME),
            }
        )
        self.defs = build_definitions(self.settings)
        self.instance = dg.DagsterInstance.ephemeral()
        self.registry = Registry(BentoMLStore(self.settings.bentoml_home), self.settings.artifact_root, "penguins")

    def champion(self, *, with_reference: bool = True) -> str:
        from mlplatform.lib.spec import load_spec

        spec = load_spec(self.spec_path)
        training, _ = cleaning.clean(synthetic.penguins(1500, seed=0), spec)
        model = fitted(training, spec)
        version = save_version(self.registry, spec, model, training)
        if not with_reference:
            (Path(self.registry.store.get(version.tag).path) / registry.REFERENCE_FILE).unlink()
        self.registry.promote(version.tag, kind="gate", by="test", reason="first")
        self.runner = ModelRunner(model, self.registry.schema(version.tag), version.tag)
        self.schema = self.registry.schema(version.tag)
        return version.tag

    def serve(self, frame: pd.DataFrame, tag: str | None = None) -> None:
        """Log ``frame``'s rows with the champion's answers, as the service does (``tag``: as another version)."""
        rows = request_rows(frame, self.schema)
        log = PredictionLog(self.settings.prediction_log, schema=self.schema, model_tag=tag or self.runner.tag)
        log.append(rows, self.runner.predict_rows(rows), endpoint="predict_batch", latency_ms=1.0)
        log.close()

    def monitor(self) -> dg.ExecuteInProcessResult:
        return self.defs.resolve_job_def(MONITOR_JOB).execute_in_process(
            run_config=run_config(self.spec_path), instance=self.instance
        )


def drifted(rows: int, seed: int) -> pd.DataFrame:
    """Longer bills and every penguin seen on Torgersen: two of the six inputs move (and the predictions)."""
    frame = synthetic.penguins(rows, seed=seed)
    return frame.assign(bill_length_mm=frame["bill_length_mm"] + 6.0, island="Torgersen")


def materialization(result: dg.ExecuteInProcessResult) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == DRIFT_ASSET]
    return {name: getattr(value, "value", value) for name, value in event.materialization.metadata.items()}


def check(result: dg.ExecuteInProcessResult) -> list[dg.AssetCheckEvaluation]:
    """The drift check's evaluations (the monitor job runs the other monitors' checks too)."""
    evaluations = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    return [e for e in evaluations if e.asset_key.to_user_string() == DRIFT_ASSET]


def observation(result: dg.ExecuteInProcessResult) -> dict:
    [event] = [
        e
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION" and e.asset_key.to_user_string() == DRIFT_ASSET
    ]
    metadata = event.event_specific_data.asset_observation.metadata
    return {name: getattr(value, "value", value) for name, value in metadata.items()}


@pytest.fixture
def monitored(tmp_path: Path, write_spec) -> Monitored:
    return Monitored(tmp_path, write_spec)


def test_drifted_traffic_asks_for_retraining_and_the_check_warns(monitored: Monitored) -> None:
    tag = monitored.champion()
    monitored.serve(drifted(3000, seed=1))
    monitored.serve(synthetic.penguins(500, seed=9), tag="penguins:another")  # not the champion's rows

    result = monitored.monitor()

    metadata = materialization(result)
    assert metadata["model_tag"] == tag and metadata["rows"] == 3000 and metadata["reference_rows"] == 1500
    assert set(metadata["drifted"]) - {"prediction"} == {"bill_length_mm", "island"}
    assert metadata[RETRAIN] is True
    assert metadata[RETRAIN_REASON].startswith("2 of 6 inputs drifted (33%, more than")
    assert metadata["drifted_share"] == 0.3333 and metadata["max_psi"] > 1.0
    assert metadata["verdict"].startswith("drift: retraining asked for")
    assert "| bill_length_mm" in metadata["drift_table"] and "| island" in metadata["drift_table"]
    assert metadata["overlay island"].startswith("![island](data:image/png;base64,")
    assert "overlay bill_depth_mm" not in metadata  # plots for the drifted columns only
    [evaluation] = check(result)
    assert evaluation.check_name == "inputs_have_not_drifted"
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert result.success  # a warning: the run itself succeeds


def test_undrifted_traffic_passes_without_retraining(monitored: Monitored) -> None:
    monitored.champion()
    monitored.serve(synthetic.penguins(3000, seed=2))

    result = monitored.monitor()

    metadata = materialization(result)
    assert metadata["drifted"] == [] and metadata[RETRAIN] is False and metadata["verdict"] == "no drift"
    assert metadata["drifted_share"] == 0.0 and metadata["max_psi"] < 0.1
    assert not [key for key in metadata if key.startswith("overlay")]
    [evaluation] = check(result)
    assert evaluation.passed


@pytest.mark.parametrize(
    ("setup", "why"),
    [
        ("no champion", "has no champion yet"),
        ("no reference", "was stored before model versions kept a reference sample"),
        ("too few rows", "fewer than monitoring.drift.min_rows (100): no verdict"),
        ("no predictions", "0 served row(s)"),
    ],
)
def test_without_a_verdict_nothing_is_materialized_and_an_observation_says_why(
    monitored: Monitored, setup: str, why: str
) -> None:
    if setup != "no champion":
        monitored.champion(with_reference=setup != "no reference")
    if setup in ("no reference", "too few rows"):
        monitored.serve(drifted(60, seed=3))

    result = monitored.monitor()

    assert result.success
    assert result.get_asset_materialization_events() == [] and check(result) == []
    seen = observation(result)
    assert seen["verdict"].startswith("no verdict: ") and why in seen["verdict"]
    assert seen[RETRAIN] is False


def test_a_feature_named_in_the_spec_asks_for_retraining_alone(tmp_path: Path, write_spec) -> None:
    monitored = Monitored(tmp_path, write_spec, features=["island"], max_drifted_share=0.9)
    monitored.champion()
    frame = synthetic.penguins(3000, seed=4)
    monitored.serve(frame.assign(island=np.where(frame["island"] == "Biscoe", "Dream", frame["island"])))

    metadata = materialization(monitored.monitor())

    assert "island" in metadata["drifted"] and metadata[RETRAIN] is True
    assert "drift in island, named in monitoring.drift.features" in metadata[RETRAIN_REASON]


def sensor_context(monitored: Monitored, cursor: str | None = None) -> dg.SensorEvaluationContext:
    """The context the daemon gives the sensor: the instance, its cursor and the code location's resources."""
    resources = build_resources(monitored.settings)
    return dg.build_sensor_context(instance=monitored.instance, cursor=cursor, resources=resources)


def test_the_sensor_launches_the_monitor_once_per_new_log_file_and_waits_between_refreshes(
    tmp_path: Path, write_spec
) -> None:
    monitored = Monitored(tmp_path, write_spec)
    sensor = monitored.defs.get_sensor_def(MONITOR_SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED  # automation.monitor is off by default

    nothing = sensor(sensor_context(monitored))
    assert isinstance(nothing, dg.SkipReason) and "no prediction of 'penguins' logged yet" in nothing.skip_message

    monitored.champion()
    monitored.serve(synthetic.penguins(200, seed=5))
    launched = sensor(sensor_context(monitored))
    [request] = launched.run_requests
    newest = PredictionLogs(folder=str(monitored.settings.prediction_log)).newest_file("penguins")
    assert request.run_key == f"monitor:{newest}" and request.tags[TRIGGER_TAG] == newest
    assert json.loads(launched.cursor)["file"] == newest

    again = sensor(sensor_context(monitored, launched.cursor))
    assert isinstance(again, dg.SkipReason) and "no prediction logged since the last refresh" in again.skip_message

    monitored.serve(synthetic.penguins(200, seed=6))
    early = sensor(sensor_context(monitored, launched.cursor))  # every_minutes (60) has not passed
    assert isinstance(early, dg.SkipReason) and "next refresh is due in" in early.skip_message
    long_ago = json.dumps({**json.loads(launched.cursor), "launched_at": 0.0})
    [due] = sensor(sensor_context(monitored, long_ago)).run_requests
    assert due.run_key != request.run_key


def test_the_sensor_starts_as_the_spec_says(tmp_path: Path, write_spec) -> None:
    on = write_spec("on.yaml", automation={"monitor": True, "sensor_seconds": 15})
    defs = build_definitions(Settings.from_env({"MLPLATFORM_HOME": str(tmp_path), "MLPLATFORM_SPEC": str(on)}))
    sensor = defs.get_sensor_def(MONITOR_SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING and sensor.minimum_interval_seconds == 15

    off = write_spec("off.yaml")
    defs = build_definitions(Settings.from_env({"MLPLATFORM_HOME": str(tmp_path), "MLPLATFORM_SPEC": str(off)}))
    assert defs.get_sensor_def(MONITOR_SENSOR).default_status == dg.DefaultSensorStatus.STOPPED
