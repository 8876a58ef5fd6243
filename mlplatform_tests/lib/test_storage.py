"""write_atomically: a reader finds the old file or the new one, whole, never half of one; on a local folder
(temporary name, then a rename) and in an object store (fsspec's memory:// stands in for s3://)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from upath import UPath

from mlplatform.lib.storage import (
    WriteConflict,
    read_frame,
    read_snapshot,
    write_atomically,
    write_frame,
    write_if_unchanged,
)


@pytest.fixture(params=["local", "memory"])
def folder(request, tmp_path: Path) -> UPath:
    if request.param == "local":
        return UPath(tmp_path / "store")
    return UPath(f"memory://atomic/{request.node.name}")


def leftovers(folder: UPath) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name != "report.json")


def test_bytes_are_written_and_folders_made(folder: UPath) -> None:
    write_atomically(folder / "deep" / "report.json", b'{"ok": true}')

    assert (folder / "deep" / "report.json").read_bytes() == b'{"ok": true}'


def test_a_new_version_replaces_the_old_and_a_reader_meanwhile_sees_the_old_whole(folder: UPath) -> None:
    target = folder / "report.json"
    write_atomically(target, b"old version")
    seen_during_write = []

    def write(destination) -> None:
        if isinstance(destination, str):
            Path(destination).write_bytes(b"new ")
        else:
            destination.write(b"new ")
        seen_during_write.append(target.read_bytes())  # what a reader finds halfway through the write
        if isinstance(destination, str):
            with open(destination, "ab") as handle:
                handle.write(b"version")
        else:
            destination.write(b"version")

    write_atomically(target, write)

    assert seen_during_write == [b"old version"]
    assert target.read_bytes() == b"new version"
    assert leftovers(folder) == []  # no temporary file beside it


def test_a_write_that_fails_leaves_the_old_file_and_no_partial_one(folder: UPath) -> None:
    target = folder / "report.json"
    write_atomically(target, b"old version")

    def half_then_crash(destination) -> None:
        if isinstance(destination, str):
            Path(destination).write_bytes(b"half of the new")
        else:
            destination.write(b"half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, half_then_crash)

    assert target.read_bytes() == b"old version"
    assert leftovers(folder) == []


def test_a_first_write_that_fails_leaves_nothing(folder: UPath) -> None:
    def crash(destination) -> None:
        raise ValueError("cannot serialize")

    with pytest.raises(ValueError, match="cannot serialize"):
        write_atomically(folder / "sub" / "model.joblib", crash)

    assert not (folder / "sub" / "model.joblib").exists()
    assert not (folder / "sub").exists() or list((folder / "sub").iterdir()) == []


def test_a_frame_round_trips_through_parquet(folder: UPath) -> None:
    frame = pd.DataFrame({"depth": [61.5, None], "cut": ["Ideal", "Good"]})

    write_frame(folder / "data.parquet", frame)

    pd.testing.assert_frame_equal(read_frame(folder / "data.parquet"), frame)


def test_of_two_writers_that_read_the_same_version_only_the_first_writes(tmp_path: Path) -> None:
    # (in S3 the same contract is a conditional PUT: mlplatform_tests/resources/test_s3_model_store.py)
    pointer = UPath(tmp_path / "registry" / "champion.json")
    absent = read_snapshot(pointer)
    write_if_unchanged(pointer, b"first", absent)
    with pytest.raises(WriteConflict, match="champion.json changed since it was read"):
        write_if_unchanged(pointer, b"second", absent)  # it was absent when this writer read it

    first, also_first = read_snapshot(pointer), read_snapshot(pointer)
    write_if_unchanged(pointer, b"third", first)
    with pytest.raises(WriteConflict):
        write_if_unchanged(pointer, b"fourth", also_first)

    assert pointer.read_bytes() == b"third"
    assert sorted(path.name for path in pointer.parent.iterdir()) == [".champion.json.lock", "champion.json"]
