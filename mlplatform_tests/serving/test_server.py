"""The built bento under ``bentoml serve``, over real HTTP: answers, authentication, validation, metrics,
the prediction log, and the pinned model version."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlplatform.lib.serving import serving
from mlplatform.lib.serving.prediction_log import read_prediction_log
from mlplatform.lib.serving.serving import request_rows
from mlplatform.resources import bentos
from mlplatform.settings import ServingSettings
from mlplatform_tests.serving.conftest import TOKEN, ServedBento, serve_bento
from mlplatform_tests.serving.models import SavedModel

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def post(served: ServedBento, path: str, body: object, headers: dict[str, str] | None = AUTH) -> httpx.Response:
    return httpx.post(served.url + path, json=body, headers=headers, timeout=30)


def test_batch_answers_equal_the_pipeline_s(served_bento: ServedBento, penguins_model: SavedModel) -> None:
    response = post(
        served_bento, "/predict_batch", {"rows": request_rows(penguins_model.holdout, penguins_model.schema)}
    )

    assert response.status_code == 200
    answer = response.json()
    assert answer["model_tag"] == penguins_model.tag
    pipeline = penguins_model.model.pipeline
    assert [p["prediction"] for p in answer["predictions"]] == pipeline.predict(penguins_model.inputs).tolist()
    classes = list(penguins_model.model.classes)
    got = [[p["probabilities"][c] for c in classes] for p in answer["predictions"]]
    np.testing.assert_allclose(got, pipeline.predict_proba(penguins_model.inputs), rtol=1e-9)


def test_concurrent_single_rows_each_get_their_own_answer(
    served_bento: ServedBento, penguins_model: SavedModel
) -> None:
    rows = request_rows(penguins_model.holdout, penguins_model.schema)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=served_bento.url, headers=AUTH, timeout=30) as client:
            return await asyncio.gather(*(client.post("/predict", json=row) for row in rows))

    responses = asyncio.run(burst())

    assert {r.status_code for r in responses} == {200}
    expected = penguins_model.model.pipeline.predict(penguins_model.inputs).tolist()
    assert [r.json()["prediction"] for r in responses] == expected
    assert {r.json()["model_tag"] for r in responses} == {penguins_model.tag}


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        (None, "no token: send Authorization: Bearer <token>"),
        ({"Authorization": "Bearer not-the-token"}, "a valid token is required"),
        ({"X-API-Key": TOKEN}, "no token: send Authorization: Bearer <token>"),
    ],
)
@pytest.mark.parametrize("path", ["/predict", "/predict_batch"])
def test_predictions_need_the_token(served_bento: ServedBento, path: str, headers: dict | None, detail: str) -> None:
    response = post(served_bento, path, {}, headers=headers)

    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "detail": detail}


@pytest.mark.parametrize("path", ["/livez", "/healthz", "/readyz", "/metrics", "/docs.json", "/"])
def test_health_readiness_metrics_and_docs_are_open(served_bento: ServedBento, path: str) -> None:
    assert httpx.get(served_bento.url + path, timeout=30).status_code == 200


def test_the_openapi_docs_describe_the_typed_request(served_bento: ServedBento) -> None:
    spec = httpx.get(served_bento.url + "/docs.json", timeout=30).json()

    assert {"/predict", "/predict_batch"} <= set(spec["paths"])
    row = spec["components"]["schemas"]["ServedPenguinsRow"]  # the project of serving/conftest.py's model
    assert row["properties"]["island"]["anyOf"][0]["enum"] == ["Biscoe", "Dream", "Torgersen"]
    assert set(row["required"]) == {
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "island",
        "sex",
    }


@pytest.mark.parametrize(
    ("change", "field", "kind"),
    [
        ({"bill_length_mm": "long"}, "bill_length_mm", "float_type"),
        ({"island": "Atlantis"}, "island", "literal_error"),
        ({"sex": 1}, "sex", "literal_error"),
        ({"wingspan_mm": 30.0}, "wingspan_mm", "extra_forbidden"),
    ],
)
def test_a_bad_row_is_a_4xx_naming_the_field(
    served_bento: ServedBento, penguins_model: SavedModel, change: dict, field: str, kind: str
) -> None:
    row = {**request_rows(penguins_model.holdout, penguins_model.schema)[0], **change}

    single = post(served_bento, "/predict", row)
    batch = post(served_bento, "/predict_batch", {"rows": [row, row]})

    # BentoML answers a request that fails its typed input with 400 (not FastAPI's 422) and pydantic's errors
    assert (single.status_code, batch.status_code) == (400, 400)
    assert [(e["loc"], e["type"]) for e in single.json()["detail"]] == [([field], kind)]
    assert [(e["loc"], e["type"]) for e in batch.json()["detail"]] == [
        (["rows", 0, field], kind),
        (["rows", 1, field], kind),
    ]


def test_a_missing_field_is_a_4xx_naming_it(served_bento: ServedBento, penguins_model: SavedModel) -> None:
    row = request_rows(penguins_model.holdout, penguins_model.schema)[0]
    del row["body_mass_g"]

    response = post(served_bento, "/predict", row)

    assert response.status_code == 400
    assert [(e["loc"], e["type"]) for e in response.json()["detail"]] == [(["body_mass_g"], "missing")]


def test_a_batch_above_the_row_limit_is_a_4xx(served_bento: ServedBento, penguins_model: SavedModel) -> None:
    row = request_rows(penguins_model.holdout, penguins_model.schema)[0]

    response = post(served_bento, "/predict_batch", {"rows": [row] * (serving.MAX_REQUEST_ROWS + 1)})

    assert response.status_code == 400
    assert [(e["loc"], e["type"]) for e in response.json()["detail"]] == [(["rows"], "too_long")]


@pytest.mark.parametrize("body", [None, [], "text", [1, 2]])
def test_a_body_of_the_wrong_shape_is_a_4xx(served_bento: ServedBento, body: object) -> None:
    assert 400 <= post(served_bento, "/predict", body).status_code < 500


def test_metrics_count_predictions_per_model_tag(served_bento: ServedBento, penguins_model: SavedModel) -> None:
    rows = request_rows(penguins_model.holdout, penguins_model.schema)
    assert post(served_bento, "/predict_batch", {"rows": rows[:3]}).status_code == 200

    metrics = httpx.get(served_bento.url + "/metrics", timeout=30).text

    tag = f'model_tag="{penguins_model.tag}"'
    for name in (
        "mlplatform_predictions_total",
        "mlplatform_prediction_latency_seconds_bucket",
        "mlplatform_model_call_rows_count",
    ):
        assert any(line.startswith(name) and tag in line for line in metrics.splitlines()), name
    requests = 'mlplatform_http_requests_total{endpoint="/predict_batch",' + tag + ',status="200"}'
    assert any(line.startswith(requests) for line in metrics.splitlines())  # in place of BentoML's, switched off


def test_the_prediction_log_receives_the_rows(served_bento: ServedBento, penguins_model: SavedModel) -> None:
    rows = request_rows(penguins_model.holdout, penguins_model.schema)[:7]
    marker = 1234.5  # a body mass no penguin in the data has, to find these rows again
    rows = [{**row, "body_mass_g": marker} for row in rows]
    assert post(served_bento, "/predict_batch", {"rows": rows}).status_code == 200

    deadline = time.monotonic() + 30  # the log is written every few seconds, off the request path
    logged = read_prediction_log(served_bento.prediction_log, penguins_model.project)
    while time.monotonic() < deadline and (logged.empty or (logged["body_mass_g"] == marker).sum() < len(rows)):
        time.sleep(0.5)
        logged = read_prediction_log(served_bento.prediction_log, penguins_model.project)

    mine = logged[logged["body_mass_g"] == marker]
    assert mine["island"].tolist() == [row["island"] for row in rows]
    assert mine["model_tag"].unique().tolist() == [penguins_model.tag]
    assert mine["request_id"].nunique() == 1 and (mine["latency_ms"] > 0).all()


def test_each_answer_s_request_id_finds_its_rows_in_the_log(
    served_bento: ServedBento, penguins_model: SavedModel
) -> None:
    rows = request_rows(penguins_model.holdout, penguins_model.schema)
    single = post(served_bento, "/predict", rows[0]).json()
    batch = post(served_bento, "/predict_batch", {"rows": rows[1:4]}).json()

    wanted = {single["request_id"], batch["request_id"]}
    deadline = time.monotonic() + 30  # the log is written every few seconds, off the request path
    mine = read_prediction_log(served_bento.prediction_log, penguins_model.project)
    while time.monotonic() < deadline and (mine.empty or mine["request_id"].isin(wanted).sum() < 4):
        time.sleep(0.5)
        mine = read_prediction_log(served_bento.prediction_log, penguins_model.project)
    mine = mine[mine["request_id"].isin(wanted)]

    assert single["request_id"] != batch["request_id"]
    assert mine[["request_id", "request_row", "prediction"]].values.tolist() == [
        [single["request_id"], 0, single["prediction"]],
        *([batch["request_id"], row, p["prediction"]] for row, p in enumerate(batch["predictions"])),
    ]


def test_without_a_token_the_server_exits_once_with_the_reason(bento_tag: str, tmp_path: Path) -> None:
    """No worker starts (and none restarts in a loop): `bentoml serve` itself exits non-zero, saying why."""
    with serve_bento(bento_tag, tmp_path, MLPLATFORM_API_TOKEN="") as server:
        with pytest.raises(bentos.BentoError, match="exited with code [1-9]"):
            server.wait_ready()
        log = server.log_path.read_text()

    assert log.count("MLPLATFORM_API_TOKEN is not set") == 1
    assert "entry_service:Predictor" not in log  # no worker was started


def test_the_service_logs_json_lines_with_its_model_tag(served_bento: ServedBento, penguins_model: SavedModel) -> None:
    """The service's own log lines are JSON (lib/logs.py), among BentoML's text lines in the server's log."""
    lines = served_bento.server.log_path.read_text(errors="replace").splitlines()
    ours = [json.loads(line) for line in lines if line.startswith('{"time"')]

    started = [line for line in ours if line["message"].startswith("serving ")]  # one line per worker
    assert len(started) == ServingSettings.from_env({}).workers
    assert {(line["logger"], line["level"]) for line in started} == {("mlplatform.predictor", "INFO")}
    # the bento's own version, not MLPLATFORM_MODEL_TAG
    assert {line["model_tag"] for line in started} == {penguins_model.tag}
    assert TOKEN not in "\n".join(lines)


def test_another_server_of_the_same_home_leaves_this_one_s_metrics(
    served_bento: ServedBento, penguins_model: SavedModel, bento_tag: str, tmp_path: Path
) -> None:
    """`bentoml serve` empties the BentoML home's metrics folder when it starts: each server keeps its own."""
    assert post(served_bento, "/predict", request_rows(penguins_model.holdout, penguins_model.schema)[0]).is_success

    def predicted() -> float:
        metrics = httpx.get(served_bento.url + "/metrics", timeout=30).text
        found = re.search(r'mlplatform_predictions_total\{endpoint="predict",model_tag="[^"]+"\} (\S+)', metrics)
        return float(found.group(1)) if found else 0.0

    before = predicted()
    with serve_bento(bento_tag, tmp_path, MLPLATFORM_API_TOKEN="") as other, pytest.raises(bentos.BentoError):
        other.wait_ready()  # it exits (no token), after BentoML emptied the home's metrics folder

    assert before >= 1 and predicted() == before
