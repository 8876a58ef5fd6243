"""Drift seen through the real service: drifted traffic sent to ``bentoml serve`` over HTTP, then undrifted traffic,
and the ``prediction_drift`` asset reading the prediction log the server wrote, against the reference sample
stored with the model it serves."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import httpx
import pandas as pd
import pytest

from mlplatform.defs.monitoring import RETRAIN, RETRAIN_REASON
from mlplatform.defs.monitoring.drift import inputs_have_not_drifted, prediction_drift
from mlplatform.lib.data import synthetic
from mlplatform.lib.registry.registry import Registry
from mlplatform.lib.serving.prediction_log import read_prediction_log
from mlplatform.lib.serving.serving import request_rows
from mlplatform.resources import ModelRegistry, ProjectSpecResource
from mlplatform.resources.model_store import BentoMLStore
from mlplatform.resources.predictions import PredictionLogs
from mlplatform_tests.serving.conftest import TOKEN, serve_bento
from mlplatform_tests.serving.models import SavedModel

pytestmark = pytest.mark.slow
ROWS = 600
GAP_SECONDS = 8.0  # between the two kinds of traffic: the second report's window starts in the middle of it


def send(url: str, frame: pd.DataFrame, schema: dict) -> None:
    response = httpx.post(
        f"{url}/predict_batch",
        json={"rows": request_rows(frame, schema)},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text


def logged(folder: Path, project: str, rows: int) -> None:
    """Wait for the server's writer (a flush every 5 s) to have written ``rows`` rows."""
    deadline = time.monotonic() + 60
    while len(read_prediction_log(folder, project)) < rows:
        assert time.monotonic() < deadline, f"the server logged {len(read_prediction_log(folder, project))} rows"
        time.sleep(0.5)


def report(spec: Path, pointer_root: Path, log: Path) -> dict:
    resources = {
        "project": ProjectSpecResource(spec_path=str(spec)),
        "registry": ModelRegistry(bentoml_home=str(os.environ["BENTOML_HOME"]), pointer_root=str(pointer_root)),
        "prediction_logs": PredictionLogs(folder=str(log)),
    }
    result = dg.materialize([prediction_drift, inputs_have_not_drifted], resources=resources)
    [event] = result.get_asset_materialization_events()
    [check] = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    metadata = {name: getattr(value, "value", value) for name, value in event.materialization.metadata.items()}
    return metadata | {"check passed": check.passed}


def test_drifted_traffic_is_flagged_and_undrifted_traffic_is_not(
    bento_tag: str, penguins_model: SavedModel, tmp_path: Path, write_spec
) -> None:
    # the session's model store holds the served model; the champion pointer is this test's own
    pointer_root = tmp_path / "artifacts"
    Registry(BentoMLStore(os.environ["BENTOML_HOME"]), str(pointer_root), penguins_model.project).promote(
        penguins_model.tag, kind="manual", by="test", reason="the model being served"
    )
    log = tmp_path / "predictions"
    drifted = synthetic.penguins(ROWS, seed=11)
    drifted = drifted.assign(bill_length_mm=drifted["bill_length_mm"] + 6.0, island="Torgersen")
    with serve_bento(bento_tag, tmp_path, MLPLATFORM_API_TOKEN=TOKEN) as server:
        server.wait_ready()
        send(server.url, drifted, penguins_model.schema)
        logged(log, penguins_model.project, ROWS)
        first = report(
            write_spec("day.yaml", name=penguins_model.project, monitoring={"drift": {"window_hours": 1}}),
            pointer_root,
            log,
        )

        time.sleep(GAP_SECONDS / 2)
        middle = datetime.now(UTC)
        time.sleep(GAP_SECONDS / 2)
        send(server.url, synthetic.penguins(ROWS, seed=12), penguins_model.schema)
        logged(log, penguins_model.project, 2 * ROWS)
        hours = (datetime.now(UTC) - middle).total_seconds() / 3600
        second = report(
            write_spec("since.yaml", name=penguins_model.project, monitoring={"drift": {"window_hours": hours}}),
            pointer_root,
            log,
        )

    assert first["rows"] == ROWS and first["model_tag"] == penguins_model.tag
    assert {"bill_length_mm", "island"} <= set(first["drifted"]) and first[RETRAIN] is True
    assert "inputs drifted" in first[RETRAIN_REASON] and not first["check passed"]
    assert second["rows"] == ROWS  # the undrifted traffic only
    assert second["drifted"] == [] and second[RETRAIN] is False and second["check passed"]
