"""The loop with the real daemon (``mlplatform dev``): a batch lands, and with nothing else done it is ingested,
a model trained, promoted and served; the stack restarts with another batch landed meanwhile, and that one
alone is ingested and retrained on, with no run repeated.

The data is the noisy curve of test_growing_data, where a forest trained on both batches beats the one trained
on the first on rows neither saw, so the second run changes the champion rather than losing the gate."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from mlplatform.defs.automation import REASON_TAG
from mlplatform.resources import LocalServing
from mlplatform.settings import Settings
from mlplatform_tests.defs.test_growing_data import FOREST, noisy_nonlinear
from mlplatform_tests.servers import free_port
from mlplatform_tests.servers_dagster import (
    FINISHED,
    DagsterServers,
    ServerError,
    answering_model_tag,
    dagster_dev,
    latest_metadata,
    run_errors,
    runs,
    wait_for_code_location,
    wait_until,
)

pytestmark = pytest.mark.slow

SENSOR_SECONDS = 5
TICKS_QUERY = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status ticks(limit: 50) { status timestamp } } }
  }
}
"""


def ticks_since(servers: DagsterServers, sensor: str, since: float) -> int:
    """How many times the daemon has evaluated ``sensor`` since ``since`` (and that it is running)."""
    selector = {"repositoryLocationName": "mlplatform", "repositoryName": "__repository__", "sensorName": sensor}
    answer = servers.graphql(TICKS_QUERY, selector=selector)["sensorOrError"]
    if answer["__typename"] != "Sensor":
        raise ServerError(f"sensor {sensor}: {answer}")
    state = answer["sensorState"]
    assert state["status"] == "RUNNING", f"{sensor} is {state['status']}: the spec turned it on"
    return sum(tick["timestamp"] > since for tick in state["ticks"])


def finished_run(servers: DagsterServers, job: str, number: int) -> dict:
    """The job's ``number``-th run (from 1), once it has succeeded; a failure raises with its errors."""

    def done() -> dict | None:
        found = runs(servers, job)
        if len(found) < number or found[number - 1]["status"] not in FINISHED:
            return None
        run = found[number - 1]
        if run["status"] != "SUCCESS":
            raise ServerError(f"{job} run {run['runId']} ended {run['status']}:\n{run_errors(servers, run['runId'])}")
        return run

    return wait_until(f"finished {job} run #{number}", servers, done)


def land(path: Path, text: str) -> None:
    """Write under a name the source ignores, then rename: the sensor never lists half a file."""
    hidden = path.with_name(f".{path.name}")
    hidden.write_text(text)
    hidden.rename(path)


def served_tag(served, deployed: dict) -> str:
    """The model tag the local deployment answers a prediction with."""
    running = served.current()
    assert running is not None, "nothing serves"
    return answering_model_tag(running.url, deployed)


def test_a_landed_batch_is_ingested_trained_promoted_and_served_with_nothing_else_done(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "curves",
                "problem": {"task": "regression", "target": "y"},
                "source": {"uri": str(landing)},
                "quality": {"profile": {"enabled": False}},
                "training": {"candidates": FOREST},
                "automation": {
                    "new_data": True,
                    "retrain": True,
                    "cooldown_minutes": 0,
                    "sensor_seconds": SENSOR_SECONDS,
                },
            }
        )
    )
    home = tmp_path / "home"
    environment = {
        "MLPLATFORM_SPEC": str(spec),
        "MLPLATFORM_DEPLOY": "local",
        "MLPLATFORM_SERVE_PORT": str(free_port()),
    }
    served = LocalServing.for_settings(Settings.from_env({"MLPLATFORM_HOME": str(home), **environment})).deployment()
    try:
        with dagster_dev(home, environment=environment) as servers:
            wait_for_code_location(servers)
            land(landing / "batch_000.csv", noisy_nonlinear(300, seed=0).to_csv(index=False))

            ingest = finished_run(servers, "ingest_batch", 1)
            training = finished_run(servers, "train_and_evaluate", 1)

            assert ingest["tags"]["mlplatform/file"].endswith("batch_000.csv")
            assert training["tags"][REASON_TAG] == "new-data"
            _, champion = latest_metadata(servers, "champion_model")
            deployed_run, deployed = latest_metadata(servers, "local_deployment")
            assert deployed_run == training["runId"]
            first_champion = champion["tag"]
            assert served_tag(served, deployed) == first_champion

        # The stack is down (daemon included) when the next batch lands; the first is still in the folder.
        land(landing / "batch_001.csv", noisy_nonlinear(300, seed=100).to_csv(index=False))
        with dagster_dev(home, environment=environment) as servers:
            wait_for_code_location(servers)
            ingest = finished_run(servers, "ingest_batch", 2)
            training = finished_run(servers, "train_and_evaluate", 2)

            assert ingest["tags"]["mlplatform/file"].endswith("batch_001.csv")
            _, champion = latest_metadata(servers, "champion_model")
            _, deployed = latest_metadata(servers, "local_deployment")
            assert champion["tag"] != first_champion
            assert served_tag(served, deployed) == champion["tag"]

            # Both sensors keep looking, and find nothing more to do.
            settled = time.time()
            for sensor in ("new_data", "retrain"):
                wait_until(
                    f"two more ticks of {sensor}", servers, lambda s=sensor: ticks_since(servers, s, settled) >= 2
                )
            assert [run["tags"]["mlplatform/file"][-13:] for run in runs(servers, "ingest_batch")] == [
                "batch_000.csv",
                "batch_001.csv",
            ]
            assert len(runs(servers, "train_and_evaluate")) == 2
    finally:
        served.stop()
