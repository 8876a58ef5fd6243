"""Drift with the real daemon (``mlplatform dev``): a model trained and served by ``mlplatform run``, then traffic
sent to it by ``mlplatform simulate traffic``. Rows like those it was trained on get a drift report that asks
for nothing, and the retrain sensor starts no run; shifted numbers and a turned-around island mix get a report
that asks for retraining, and a training run starts tagged with the drift reason.

Each phase is one request, so one log file, so one monitor run (tagged with that file); the drift window (24 h
by default) holds both phases' rows, so the second report judges the undrifted rows and the drifted ones
together, and the test says so."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mlplatform.definitions import TRAIN_AND_EVALUATE
from mlplatform.defs.automation import REASON_TAG
from mlplatform.defs.automation.monitor import MONITOR_JOB, MONITOR_SENSOR, TRIGGER_TAG
from mlplatform.defs.automation.triggers import RETRAIN_REASON_TAG, RETRAIN_SENSOR
from mlplatform.defs.monitoring import DRIFT_ASSET, RETRAIN
from mlplatform.resources.predictions import PredictionLogs
from mlplatform_tests.servers import free_port
from mlplatform_tests.servers_dagster import (
    DagsterServers,
    dagster_dev,
    latest_metadata,
    runs,
    sensor_ticks,
    wait_for_code_location,
    wait_for_run,
    wait_for_ticks,
    wait_until,
)
from mlplatform_tests.test_cli import mlplatform

pytestmark = pytest.mark.slow
ROWS = 300  # per phase, in one request
SHIFTED = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "island"]


def told(servers: DagsterServers, sensor: str) -> Callable[[], str]:
    """What the sensor's latest ticks said, for a failure message."""

    def latest() -> str:
        ticks = sensor_ticks(servers, sensor, limit=5)
        said = [f"{tick['status']} {tick['skipReason'] or tick['error'] or ''}" for tick in ticks]
        return f"{sensor}'s latest ticks, newest first: " + "; ".join(said)

    return latest


def test_drifted_traffic_starts_a_retraining_tagged_drift_and_undrifted_traffic_none(
    tmp_path: Path, write_spec
) -> None:
    spec = write_spec(
        automation={"monitor": True, "retrain": True, "cooldown_minutes": 0, "sensor_seconds": 5},
        monitoring={"every_minutes": 0.1},
    )
    home = tmp_path / "home"
    serving = {"MLPLATFORM_DEPLOY": "local", "MLPLATFORM_SERVE_PORT": str(free_port())}
    user = ("--spec", str(spec), "--home", str(home))
    log = PredictionLogs(folder=str(home / "predictions"))

    def send(*drift: str, seed: int) -> str:
        """``ROWS`` rows to the served model in one request; the log file they were written to, once written."""
        logged = len(log.read("penguins"))
        rows = ("--rows", str(ROWS), "--batch-rows", str(ROWS), "--seed", str(seed))
        sent = mlplatform("simulate", "traffic", *rows, *drift, *user, cwd=tmp_path, **serving)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        wait_until(f"{ROWS} more logged rows", servers, lambda: len(log.read("penguins")) == logged + ROWS, 60)
        return log.newest_file("penguins")

    def monitored(log_file: str) -> str:
        """The monitor run launched for ``log_file`` (the newest log file when it was), once it succeeded."""

        def launched() -> list[str]:
            return [run["runId"] for run in runs(servers, MONITOR_JOB) if run["tags"].get(TRIGGER_TAG) == log_file]

        [run_id] = wait_until(f"the run for {log_file}", servers, launched, 300, told(servers, MONITOR_SENSOR))
        wait_for_run(servers, run_id)
        return run_id

    def report_for(log_file: str) -> dict:
        """The drift report of the monitor run for ``log_file``: the latest, as the retrain sensor reads it."""
        run_id = monitored(log_file)
        reported_by, report = latest_metadata(servers, DRIFT_ASSET)
        assert reported_by == run_id, f"the latest {DRIFT_ASSET} is from run {reported_by}, not {run_id}"
        return report

    try:
        trained = mlplatform("run", *user, cwd=tmp_path, **serving)
        assert trained.returncode == 0, trained.stdout + trained.stderr
        with dagster_dev(home, environment={"MLPLATFORM_SPEC": str(spec), **serving}) as servers:
            wait_for_code_location(servers)
            trainings = len(runs(servers, TRAIN_AND_EVALUATE))  # the one `mlplatform run` made
            _, champion = latest_metadata(servers, "champion_model")
            # The deployment's check logged a prediction, and the monitor a run for it: once that run is over,
            # each report below is the one monitor run of its phase.
            monitored(wait_until("the check's prediction logged", servers, lambda: log.newest_file("penguins")))

            calm = report_for(send(seed=1))
            served = len(log.read("penguins"))  # all by the champion: its deployment's check, then this phase
            assert calm["rows"] == served and calm["model_tag"] == champion["tag"]
            assert calm[RETRAIN] is False and calm["drifted"] == [], calm["verdict"]
            judged = time.time()
            wait_for_ticks(servers, RETRAIN_SENSOR, count=2, after=judged)
            assert len(runs(servers, TRAIN_AND_EVALUATE)) == trainings, told(servers, RETRAIN_SENSOR)()

            drifted = report_for(send("--drift", "--sigmas", "2", seed=2))
            assert drifted["rows"] == served + ROWS  # the window holds both phases: about half the rows drifted
            assert drifted[RETRAIN] is True, drifted["verdict"]
            assert set(SHIFTED) <= set(drifted["drifted"]), drifted["drift_table"]
            [run] = wait_until(
                f"{TRAIN_AND_EVALUATE} run after the drift report",
                servers,
                lambda: runs(servers, TRAIN_AND_EVALUATE)[trainings:],
                300,
                told(servers, RETRAIN_SENSOR),
            )
            assert run["tags"][REASON_TAG] == "drift", run["tags"]
            assert run["tags"][RETRAIN_REASON_TAG].startswith(f"{DRIFT_ASSET}: "), run["tags"]
            # On the data the champion was trained on, it stops at cleaned_data as "nothing new", and succeeds.
            wait_for_run(servers, run["runId"])
            assert latest_metadata(servers, "champion_model")[1]["tag"] == champion["tag"]
    finally:
        mlplatform("serve", "--stop", *user, cwd=tmp_path, **serving)
