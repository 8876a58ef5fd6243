"""BatchLedger.accept's last line of defence: a batch that cannot be appended to the training data is never
accepted, whatever the checks before it said."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from upath import UPath

from mlplatform.lib.batches import Batch, BatchLedger, RejectedBatch


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
