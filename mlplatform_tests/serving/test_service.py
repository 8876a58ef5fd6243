"""The service class of bentos/predictor, instantiated in this process and called directly."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import ValidationError

from mlplatform.lib.serving.batching import MicroBatcher
from mlplatform.lib.serving.prediction_log import read_prediction_log
from mlplatform.lib.serving.serving import request_rows
from mlplatform.settings import SettingsError
from mlplatform_tests.serving.models import SavedModel


@pytest.fixture
def service(service_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A fresh instance logging under tmp_path, closed (its log flushed) at the end."""
    monkeypatch.setattr(
        service_module, "SETTINGS", dataclasses.replace(service_module.SETTINGS, prediction_log=tmp_path / "log")
    )
    instance = service_module.Predictor()
    yield instance
    instance.close()


def rows_of(service_module: ModuleType, penguins_model: SavedModel) -> list:
    return [service_module.Row(**row) for row in request_rows(penguins_model.holdout, penguins_model.schema)]


def test_it_serves_the_pinned_version(service_module: ModuleType, penguins_model: SavedModel, service) -> None:
    assert penguins_model.tag == service_module.MODEL_TAG
    assert str(service_module.Predictor.models[0].tag) == penguins_model.tag  # what `bentoml build` packs
    assert service.runner.tag == penguins_model.tag


def test_one_row(service_module: ModuleType, penguins_model: SavedModel, service) -> None:
    rows = rows_of(service_module, penguins_model)

    answer = asyncio.run(service.predict(rows[0]))

    assert answer.model_tag == penguins_model.tag
    assert answer.prediction == penguins_model.model.pipeline.predict(penguins_model.inputs.head(1))[0]
    assert set(answer.probabilities) == set(penguins_model.model.classes)


def test_a_batch_answers_in_order(service_module: ModuleType, penguins_model: SavedModel, service) -> None:
    answer = asyncio.run(service.predict_batch(rows_of(service_module, penguins_model)))

    assert answer.model_tag == penguins_model.tag
    expected = penguins_model.model.pipeline.predict(penguins_model.inputs).tolist()
    assert [p["prediction"] for p in answer.predictions] == expected


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(
    service_module: ModuleType, penguins_model: SavedModel, service
) -> None:
    rows = rows_of(service_module, penguins_model)
    calls: list[int] = []
    service.batcher._on_batch = calls.append

    async def burst():
        return await asyncio.gather(*(service.predict(row) for row in rows))

    answers = asyncio.run(burst())

    assert [a.prediction for a in answers] == penguins_model.model.pipeline.predict(penguins_model.inputs).tolist()
    assert sum(calls) == len(rows) and len(calls) < len(rows)


def test_the_log_holds_every_answered_row_after_close(
    service_module: ModuleType, penguins_model: SavedModel, service, tmp_path: Path
) -> None:
    rows = rows_of(service_module, penguins_model)
    asyncio.run(service.predict_batch(rows[:5]))
    asyncio.run(service.predict(rows[5]))

    service.close()

    logged = read_prediction_log(tmp_path / "log", penguins_model.project)
    assert logged["endpoint"].tolist() == ["predict_batch"] * 5 + ["predict"]
    assert logged["island"].tolist() == [row.model_dump(by_alias=True)["island"] for row in rows[:6]]
    assert logged["model_tag"].unique().tolist() == [penguins_model.tag]


def test_answers_carry_the_request_id_the_log_holds(
    service_module: ModuleType, penguins_model: SavedModel, service, tmp_path: Path
) -> None:
    rows = rows_of(service_module, penguins_model)
    single = asyncio.run(service.predict(rows[0]))
    batch = asyncio.run(service.predict_batch(rows[1:4]))

    service.close()

    logged = read_prediction_log(tmp_path / "log", penguins_model.project)
    assert single.request_id != batch.request_id
    assert logged[["request_id", "request_row"]].values.tolist() == [
        [single.request_id, 0],
        *([batch.request_id, row] for row in range(3)),
    ]
    assert logged["prediction"].tolist() == [single.prediction, *(p["prediction"] for p in batch.predictions)]


def test_the_request_model_is_the_schema_s(service_module: ModuleType, penguins_model: SavedModel) -> None:
    row = request_rows(penguins_model.holdout, penguins_model.schema)[0]

    with pytest.raises(ValidationError, match="island"):
        service_module.Row(**{**row, "island": "Atlantis"})


def test_without_a_token_it_refuses_to_start(service_module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "SETTINGS", dataclasses.replace(service_module.SETTINGS, api_token=None))

    with pytest.raises(SettingsError, match="MLPLATFORM_API_TOKEN is not set"):
        service_module.Predictor()


def test_a_non_finite_answer_is_422_naming_the_inputs_and_never_logged(
    service_module: ModuleType, penguins_model: SavedModel, service, tmp_path: Path
) -> None:
    """A model whose answer for a row is NaN (as a champion's was for inputs at the edge of floating point, in
    issue #14; this test model stays finite there, so a stand-in predictor gives the NaN): the client gets a 422
    naming the row's inputs, not a label, and nothing is logged as a prediction."""

    def nan_for_the_second_row(rows: list[dict]) -> list[dict]:
        answers = service.runner.predict_rows(rows)
        answers[1] = {"prediction": "Adelie", "probabilities": {**answers[1]["probabilities"], "Adelie": float("nan")}}
        return answers

    service.batcher = MicroBatcher(nan_for_the_second_row)
    good = request_rows(penguins_model.holdout, penguins_model.schema)[0]
    rows = [service_module.Row(**good), service_module.Row(**{**good, "island": None})]

    answer = asyncio.run(service.predict_batch(rows))
    service.close()

    assert answer.status_code == 422
    detail = json.loads(answer.body)["detail"]
    assert {(tuple(e["loc"][:2]), e["type"]) for e in detail} == {(("rows", 1), "non_finite_output")}
    assert {e["loc"][2] for e in detail} == set(penguins_model.inputs.columns) - {"island"}  # those it was given
    assert read_prediction_log(tmp_path / "log", penguins_model.project).empty


def test_the_request_timeout_is_the_body_s_deadline_plus_the_model_s_seconds(service_module: ModuleType) -> None:
    """Not BentoML's 60 s: its timeout middleware keeps every request's context alive until the timeout, so its
    length times the request rate is how many contexts the worker holds (bench/README.md, point 7)."""
    traffic = service_module.Predictor.config["traffic"]
    assert traffic["timeout"] == service_module.SETTINGS.body_seconds + service_module.MODEL_SECONDS == 15.0
