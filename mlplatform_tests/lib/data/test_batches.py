"""BatchLedger: the order of acceptance, snapshots that replace and batches that append, recorded data versions,
the quarantine, and accept's last line of defence: a batch that cannot be appended to the training data is
never accepted, whatever the checks before it said."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from upath import UPath

from mlplatform.lib.data.batches import Batch, BatchLedger, RejectedBatch, UnknownDataVersion


def batch(batch_id: str, frame: pd.DataFrame, appends: bool = True) -> Batch:
    return Batch(batch_id, f"{batch_id}.csv", None, frame, None, appends)


def accepted_once(root: UPath) -> BatchLedger:
    ledger = BatchLedger(root)
    first = pd.DataFrame({"depth": [61.5, 59.8], "cut": ["Ideal", "Good"], "certified": [True, False]})
    assert ledger.accept(batch("first", first), "run-1")
    return ledger


@pytest.fixture
def ledger(tmp_path: Path) -> BatchLedger:
    return accepted_once(UPath(tmp_path / "batches"))


@pytest.mark.parametrize("where", ["folder", "object store"])
def test_the_accepted_kinds_come_from_the_parquet_footers(ledger: BatchLedger, where: str, request) -> None:
    if where == "object store":  # fsspec's in-memory filesystem stands in for s3://: no local path to open
        ledger = accepted_once(UPath(f"memory://ledgers/{request.node.name}"))

    kinds = ledger.accepted_kinds()

    assert {name: kind for name, (kind, _) in kinds.items()} == {
        "depth": "numeric",
        "cut": "text",
        "certified": "boolean",
    }
    assert kinds["depth"][1] == "double"


@pytest.mark.parametrize(
    ("column", "values", "expected"),
    [
        ("depth", ["0.23", "61,5"], "column 'depth' is numeric (double) in the accepted data but text (dtype str)"),
        ("cut", [1, 2], "column 'cut' is text (large_string) in the accepted data but numeric (dtype int64)"),
        ("certified", [1.0, 0.0], "column 'certified' is boolean (bool) in the accepted data but numeric"),
    ],
)
def test_a_batch_that_cannot_join_is_refused_and_quarantined(
    ledger: BatchLedger, column: str, values: list, expected: str
) -> None:
    frame = pd.DataFrame({"depth": [62.0, 60.1], "cut": ["Fair", "Ideal"], "certified": [False, True]})
    frame[column] = values

    with pytest.raises(RejectedBatch) as raised:
        ledger.accept(batch("second", frame), "run-2")

    assert expected in str(raised.value) and "second.csv" in str(raised.value)
    assert [entry["batch_id"] for entry in ledger.manifest()] == ["first"]
    reason = json.loads((Path(ledger.root.path) / "quarantine" / "second" / "reason.json").read_text())
    assert reason["stage"] == "acceptance" and expected in reason["reasons"][0]
    assert len(ledger.accepted_frame()) == 2  # the training data still reads


def test_a_column_without_values_joins_any_kind(ledger: BatchLedger, tmp_path: Path) -> None:
    frame = pd.DataFrame({"depth": [np.nan, np.nan], "cut": [np.nan, np.nan], "certified": [None, None]})

    assert ledger.accept(batch("empty", frame), "run-2")
    assert ledger.accept(batch("third", pd.DataFrame({"depth": [1.0], "cut": ["Good"], "certified": [True]})), "3")

    joined = ledger.accepted_frame()
    joined.to_parquet(tmp_path / "training.parquet")  # what accepted_data stores
    assert len(joined) == 5


def test_a_snapshot_replaces_the_data_and_is_not_held_to_its_kinds(ledger: BatchLedger) -> None:
    snapshot = pd.DataFrame({"depth": ["shallow", "deep"], "cut": ["Fair", "Good"], "certified": [True, True]})

    assert ledger.accept(batch("snapshot", snapshot, appends=False), "run-2")

    assert ledger.accepted_frame()["depth"].tolist() == ["shallow", "deep"]


def rows(*depths: float) -> pd.DataFrame:
    return pd.DataFrame({"depth": list(depths), "cut": ["Good"] * len(depths), "certified": [True] * len(depths)})


def test_the_manifest_keeps_the_order_of_acceptance_and_the_training_data_follows_it(ledger: BatchLedger) -> None:
    for name, depth in (("b", 1.0), ("a", 2.0), ("c", 3.0)):  # not in the order of their names
        assert ledger.accept(batch(name, rows(depth)), f"run-{name}")

    assert [entry["batch_id"] for entry in ledger.manifest()] == ["first", "b", "a", "c"]
    assert [entry["run_id"] for entry in ledger.manifest()][1:] == ["run-b", "run-a", "run-c"]
    assert ledger.accepted_frame()["depth"].tolist() == [61.5, 59.8, 1.0, 2.0, 3.0]


def test_the_same_batch_accepted_again_is_not_added_twice(ledger: BatchLedger) -> None:
    assert ledger.accept(batch("second", rows(1.0)), "run-2")

    assert ledger.accept(batch("second", rows(1.0)), "run-2 re-executed") is False

    assert [entry["batch_id"] for entry in ledger.manifest()] == ["first", "second"]
    assert len(ledger.accepted_frame()) == 3


def test_a_batch_delivered_again_after_another_is_not_added_twice(ledger: BatchLedger) -> None:
    assert ledger.accept(batch("a", rows(1.0)), "run-a")
    assert ledger.accept(batch("b", rows(2.0)), "run-b")

    assert ledger.accept(batch("a", rows(1.0)), "run-a again") is False

    assert [entry["batch_id"] for entry in ledger.manifest()] == ["first", "a", "b"]
    assert ledger.accepted_frame()["depth"].tolist() == [61.5, 59.8, 1.0, 2.0]


def test_the_ledger_knows_accepted_and_quarantined_batches_only(ledger: BatchLedger) -> None:
    ledger.quarantine(batch("bad", rows(1.0)), {"stage": "validation", "reasons": ["column 'depth': ..."]})

    assert ledger.knows("first") and ledger.knows("bad")
    assert not ledger.knows("never-seen")


def test_a_snapshot_after_batches_replaces_them_and_later_batches_append_to_it(ledger: BatchLedger) -> None:
    ledger.accept(batch("second", rows(1.0)), "run-2")

    ledger.accept(batch("snapshot", rows(10.0, 11.0), appends=False), "run-3")
    assert ledger.accepted_frame()["depth"].tolist() == [10.0, 11.0]
    ledger.accept(batch("after", rows(12.0)), "run-4")

    assert ledger.accepted_frame()["depth"].tolist() == [10.0, 11.0, 12.0]
    assert [entry["batch_id"] for entry in ledger.manifest()] == ["first", "second", "snapshot", "after"]


def test_the_same_snapshot_accepted_again_moves_to_the_end(ledger: BatchLedger) -> None:
    snapshot = batch("snapshot", rows(10.0), appends=False)
    ledger.accept(snapshot, "run-2")
    ledger.accept(batch("other", rows(20.0), appends=False), "run-3")

    assert ledger.accept(snapshot, "run-4")  # the source went back to an earlier content

    assert [entry["batch_id"] for entry in ledger.manifest()] == ["first", "other", "snapshot"]
    assert ledger.accepted_frame()["depth"].tolist() == [10.0]


def test_a_recorded_data_version_is_rebuilt_exactly_after_the_data_moved_on(ledger: BatchLedger) -> None:
    first_path = ledger.record_version("v1")
    ledger.accept(batch("second", rows(1.0)), "run-2")
    ledger.record_version("v2")
    ledger.accept(batch("third", rows(2.0)), "run-3")

    assert ledger.frame_at("v1")["depth"].tolist() == [61.5, 59.8]
    assert ledger.frame_at("v2")["depth"].tolist() == [61.5, 59.8, 1.0]
    assert json.loads(Path(first_path.path).read_text()) == {"data_version": "v1", "batch_ids": ["first"]}
    ledger.record_version("v1")  # recorded again later (a re-executed run): what v1 was does not change
    assert ledger.frame_at("v1")["depth"].tolist() == [61.5, 59.8]


def test_an_unknown_data_version_is_its_own_error_naming_the_recorded_ones(ledger: BatchLedger) -> None:
    ledger.record_version("v1")

    with pytest.raises(
        UnknownDataVersion, match=r"data version 'v9' was never recorded under .* \(recorded: \['v1'\]\)"
    ):
        ledger.frame_at("v9")


def test_quarantine_moves_a_landing_file_with_its_reason(tmp_path: Path) -> None:
    ledger = BatchLedger(UPath(tmp_path / "batches"))
    landing = tmp_path / "landing" / "002.csv"
    landing.parent.mkdir()
    landing.write_bytes(b"depth,cut\n61.5,Ideal\n")
    arrived = Batch("b2", str(landing), str(landing), None, landing.read_bytes(), appends=True)

    folder = ledger.quarantine(arrived, {"stage": "parsing", "reasons": ["not a CSV"], "run_id": "run-9"})

    assert not landing.exists()  # moved out of the landing folder: not offered again
    assert (Path(folder.path) / "original" / "002.csv").read_bytes() == b"depth,cut\n61.5,Ideal\n"
    [reason] = ledger.quarantined()
    assert (reason["batch_id"], reason["source"], reason["stage"], reason["run_id"]) == (
        "b2",
        str(landing),
        "parsing",
        "run-9",
    )
    assert ledger.knows("b2") and ledger.manifest() == []
    with pytest.raises(RejectedBatch, match=r"batch b2 \(.*002.csv\) was quarantined"):
        ledger.accept(Batch("b2", str(landing), None, rows(1.0), None, appends=True), "run-10")


def test_a_rejected_snapshot_is_copied_and_its_source_left_alone(tmp_path: Path) -> None:
    ledger = BatchLedger(UPath(tmp_path / "batches"))
    source = tmp_path / "penguins.csv"
    source.write_bytes(b"depth\n1.0\n")

    ledger.quarantine(Batch("s1", str(source), str(source), rows(1.0), source.read_bytes(), appends=False), {})

    assert source.exists()  # not ours to move
    assert (tmp_path / "batches" / "quarantine" / "s1" / "data.parquet").is_file()
