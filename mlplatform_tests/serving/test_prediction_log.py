"""mlplatform.lib.serving.prediction_log: batched Parquet files off the request path, readable as one frame."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from mlplatform.lib.serving.prediction_log import PredictionLog, PredictionLogError, read_prediction_log
from mlplatform.lib.serving.serving import RowPrediction

SCHEMA = {
    "project": "penguins",
    "task": "classification",
    "classes": ["Adelie", "Gentoo"],
    "columns": [
        {"name": "bill_length_mm", "kind": "number", "type": "float"},
        {"name": "year", "kind": "number", "type": "integer"},
        {"name": "island", "kind": "category", "type": "string", "categories": ["Biscoe", "Dream"]},
        {"name": "tagged", "kind": "category", "type": "bool", "categories": ["False", "True"]},
    ],
}
ROWS = [
    {"bill_length_mm": 39.1, "year": 2007, "island": "Dream", "tagged": True},
    {"bill_length_mm": None, "year": None, "island": None, "tagged": None},
]
ANSWERS = [
    RowPrediction(prediction="Adelie", probabilities={"Adelie": 0.9, "Gentoo": 0.1}),
    RowPrediction(prediction="Gentoo", probabilities={"Adelie": 0.2, "Gentoo": 0.8}),
]


def files(folder: Path) -> list[Path]:
    return sorted(folder.glob("penguins/date=*/*.parquet"))


def test_close_writes_every_row_with_its_answer_and_types(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, schema=SCHEMA, model_tag="penguins:v1", flush_seconds=60)
    assert log.append(ROWS, ANSWERS, endpoint="predict_batch", latency_ms=12.5)
    assert log.append(ROWS[:1], ANSWERS[:1], endpoint="predict", latency_ms=3.0)
    assert files(tmp_path) == []  # nothing written on the request path

    log.close()

    (written,) = files(tmp_path)
    assert written.parent.name.startswith("date=20")
    frame = read_prediction_log(tmp_path, "penguins")
    assert frame[["bill_length_mm", "year", "island", "tagged"]].astype(object).where(frame.notna(), None).to_dict(
        "records"
    ) == [*ROWS, ROWS[0]]
    assert frame["prediction"].tolist() == ["Adelie", "Gentoo", "Adelie"]
    assert frame["probability_Gentoo"].tolist() == [0.1, 0.8, 0.1]
    assert frame["model_tag"].unique().tolist() == ["penguins:v1"]
    assert frame["endpoint"].tolist() == ["predict_batch", "predict_batch", "predict"]
    assert frame["latency_ms"].tolist() == [12.5, 12.5, 3.0]
    assert frame["request_id"].nunique() == 2  # the batch's rows share one
    assert str(frame["logged_at"].dtype) == "datetime64[us, UTC]"
    assert {str(frame[c].dtype) for c in ("bill_length_mm", "year", "island", "tagged")} == {
        "Float64",
        "Int64",
        "string",
        "boolean",
    }


def test_rows_are_flushed_every_interval_without_closing(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, schema=SCHEMA, model_tag="penguins:v1", flush_seconds=0.2)
    log.append(ROWS, ANSWERS, endpoint="predict_batch", latency_ms=1.0)

    deadline = time.monotonic() + 10
    while not files(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)

    assert len(read_prediction_log(tmp_path, "penguins")) == 2
    log.append(ROWS, ANSWERS, endpoint="predict_batch", latency_ms=1.0)
    log.close()
    assert len(files(tmp_path)) == 2
    assert not list(tmp_path.rglob(".*partial"))


def test_enough_waiting_rows_are_flushed_before_the_interval(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, schema=SCHEMA, model_tag="penguins:v1", flush_seconds=60, flush_rows=4)
    for _ in range(2):
        log.append(ROWS, ANSWERS, endpoint="predict_batch", latency_ms=1.0)
    deadline = time.monotonic() + 10
    while not files(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    log.append(ROWS[:1], ANSWERS[:1], endpoint="predict", latency_ms=1.0)
    log.close()

    assert [len(pd.read_parquet(path)) for path in files(tmp_path)] == [4, 1]


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    dropped: list[int] = []
    log = PredictionLog(
        tmp_path, schema=SCHEMA, model_tag="penguins:v1", flush_seconds=60, max_queued_rows=3, on_drop=dropped.append
    )

    assert log.append(ROWS, ANSWERS, endpoint="predict_batch", latency_ms=1.0)
    assert not log.append(ROWS, ANSWERS, endpoint="predict_batch", latency_ms=1.0)
    log.close()

    assert log.dropped_rows == 2 and dropped == [2]
    assert len(read_prediction_log(tmp_path, "penguins")) == 2


def test_a_write_that_fails_is_counted_and_the_log_goes_on(tmp_path: Path) -> None:
    (tmp_path / "penguins").write_text("a file where the folder should be")
    dropped: list[int] = []
    log = PredictionLog(tmp_path, schema=SCHEMA, model_tag="penguins:v1", flush_seconds=60, on_drop=dropped.append)
    log.append(ROWS, ANSWERS, endpoint="predict_batch", latency_ms=1.0)
    log.close()

    assert log.dropped_rows == 2 and dropped == [2] and log.files_written == 0


def test_an_input_column_named_like_a_log_column_is_refused(tmp_path: Path) -> None:
    schema = {**SCHEMA, "columns": [{"name": "prediction", "kind": "number", "type": "float"}]}

    with pytest.raises(PredictionLogError, match=r"\['prediction'\] clash"):
        PredictionLog(tmp_path, schema=schema, model_tag="penguins:v1")


def test_each_row_is_logged_under_its_request_s_id_and_position(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, schema=SCHEMA, model_tag="penguins:v1", flush_seconds=60)
    log.append(ROWS, ANSWERS, endpoint="predict_batch", latency_ms=1.0, request_id="abc-1")
    log.append(ROWS[:1], ANSWERS[:1], endpoint="predict", latency_ms=1.0, request_id="abc-2")
    log.append(ROWS[:1], ANSWERS[:1], endpoint="predict", latency_ms=1.0)  # none given: the log makes one
    log.close()

    frame = read_prediction_log(tmp_path, "penguins")

    assert frame["request_id"].tolist()[:3] == ["abc-1", "abc-1", "abc-2"]
    assert frame["request_id"][3].startswith(log.request_ids.prefix)
    assert frame["request_row"].tolist() == [0, 1, 0, 0]


def test_the_id_column_is_logged_as_text_and_null_when_not_sent(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, schema={**SCHEMA, "id_column": "ring"}, model_tag="penguins:v1", flush_seconds=60)
    rows = [{**ROWS[0], "ring": 1042}, {**ROWS[1], "ring": "R-7"}, {**ROWS[0], "ring": None}]
    log.append(rows, [*ANSWERS, ANSWERS[0]], endpoint="predict_batch", latency_ms=1.0)
    log.close()

    frame = read_prediction_log(tmp_path, "penguins")

    assert frame["ring"].astype(object).where(frame["ring"].notna(), None).tolist() == ["1042", "R-7", None]


def test_an_id_column_named_like_a_log_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PredictionLogError, match=r"\['request_id'\] clash"):
        PredictionLog(tmp_path, schema={**SCHEMA, "id_column": "request_id"}, model_tag="penguins:v1")


def test_reading_a_project_that_logged_nothing_gives_an_empty_frame(tmp_path: Path) -> None:
    assert read_prediction_log(tmp_path, "penguins").empty


def test_reading_since_a_time_skips_older_days_and_rows_and_reads_only_the_columns_asked(tmp_path: Path) -> None:
    earlier = PredictionLog(tmp_path, schema=SCHEMA, model_tag="penguins:v1", flush_seconds=60)
    earlier.append(ROWS, ANSWERS, endpoint="predict_batch", latency_ms=1.0)
    earlier.close()
    since = datetime.now(UTC)
    later = PredictionLog(tmp_path, schema=SCHEMA, model_tag="penguins:v2", flush_seconds=60)
    later.append(ROWS[:1], ANSWERS[:1], endpoint="predict", latency_ms=1.0)
    later.close()
    old_day = tmp_path / "penguins" / "date=2020-01-01"
    old_day.mkdir()
    (old_day / "20200101T000000000000Z-1-deadbeef.parquet").write_text("not parquet: a day before is never opened")

    frame = read_prediction_log(tmp_path, "penguins", since=since, columns=["island", "model_tag"])

    assert frame.to_dict("records") == [{"island": "Dream", "model_tag": "penguins:v2"}]
    assert len(read_prediction_log(tmp_path, "penguins", since=since - timedelta(hours=1), columns=["island"])) == 3


def test_rows_of_several_workers_are_read_in_the_order_logged(tmp_path: Path) -> None:
    """Each worker's file is named for its first row: the first worker's file sorts first by name even though it
    also holds the row logged last."""
    first = PredictionLog(tmp_path, schema=SCHEMA, model_tag="penguins:v1", flush_seconds=60)
    second = PredictionLog(tmp_path, schema=SCHEMA, model_tag="penguins:v1", flush_seconds=60)
    first.append(ROWS, ANSWERS, endpoint="predict_batch", latency_ms=1.0, request_id="a-1")
    second.append(ROWS[:1], ANSWERS[:1], endpoint="predict", latency_ms=1.0, request_id="b-1")
    first.append(ROWS[:1], ANSWERS[:1], endpoint="predict", latency_ms=1.0, request_id="a-2")
    first.close()
    second.close()

    frame = read_prediction_log(tmp_path, "penguins")
    asked = read_prediction_log(tmp_path, "penguins", columns=["request_row", "request_id"])

    assert len(files(tmp_path)) == 2
    assert frame["request_id"].tolist() == ["a-1", "a-1", "b-1", "a-2"]
    assert frame["request_row"].tolist() == [0, 1, 0, 0]
    assert asked.columns.tolist() == ["request_row", "request_id"]
    assert asked["request_id"].tolist() == ["a-1", "a-1", "b-1", "a-2"]
