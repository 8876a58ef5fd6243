"""New files in a folder of batches: found oldest name first, each read once, not re-read on every run."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from upath import UPath

from mlplatform.lib.data import ingest
from mlplatform.lib.data.batches import BatchLedger, arriving_batch, content_id, new_arrivals


@pytest.fixture
def landing(tmp_path: Path, spec_from, penguins: pd.DataFrame):
    folder = tmp_path / "landing"
    folder.mkdir()
    for number in range(3):
        penguins.iloc[number * 50 : (number + 1) * 50].to_csv(folder / f"batch_{number}.csv", index=False)
    spec = spec_from(source={"uri": str(folder)})
    return folder, spec, BatchLedger(UPath(tmp_path / "ledger"))


def accept_all(spec, ledger: BatchLedger) -> None:
    while (batch := arriving_batch(spec, ledger)) is not None:
        ledger.accept(batch, "test")


def test_new_files_are_listed_oldest_name_first_with_their_content_hash(landing) -> None:
    folder, spec, ledger = landing

    arrivals = new_arrivals(spec, ledger)

    assert [Path(a.path).name for a in arrivals] == ["batch_0.csv", "batch_1.csv", "batch_2.csv"]
    assert arrivals[1].batch_id == content_id((folder / "batch_1.csv").read_bytes())


def test_accepted_files_are_not_read_again(landing) -> None:
    folder, spec, ledger = landing
    accept_all(spec, ledger)
    # Same size, same time of change, other bytes: only a read could tell, so a file that looked new would
    # prove it had been read again.
    accepted = folder / "batch_0.csv"
    before = accepted.stat()
    accepted.write_bytes(accepted.read_bytes().replace(b"Adelie", b"ADELIE"))
    os.utime(accepted, ns=(before.st_atime_ns, before.st_mtime_ns))
    (folder / "batch_3.csv").write_bytes((folder / "batch_1.csv").read_bytes().replace(b"Adelie", b"ADELIE"))

    arrivals = new_arrivals(spec, ledger)

    assert [Path(a.path).name for a in arrivals] == ["batch_3.csv"]


def test_a_file_rewritten_in_place_is_read_again_and_is_new(landing) -> None:
    folder, spec, ledger = landing
    accept_all(spec, ledger)
    changed = folder / "batch_1.csv"
    before = changed.stat()
    changed.write_text(changed.read_text().replace("Torgersen", "Dream"))
    os.utime(changed, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))

    [arrival] = new_arrivals(spec, ledger)

    assert arrival.path.endswith("batch_1.csv") and arrival.batch_id == content_id(changed.read_bytes())


def test_a_named_file_is_ingested_and_an_unknown_one_fails_naming_the_new_ones(landing) -> None:
    folder, spec, ledger = landing

    batch = arriving_batch(spec, ledger, str(folder / "batch_2.csv"))

    assert batch is not None and batch.name.endswith("batch_2.csv") and len(batch.frame) == 50
    with pytest.raises(ingest.IngestionError, match=r"batch_9.csv: not a new file .*batch_0.csv"):
        arriving_batch(spec, ledger, str(folder / "batch_9.csv"))
