"""What the data assets and checks share about the batch a run is handling."""

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
from upath import UPath

from mlplatform.lib.data.batches import Batch, BatchLedger
from mlplatform.lib.storage import is_local, write_atomically
from mlplatform.resources import ArtifactStore

RAW_BATCH = dg.AssetKey("raw_batch")


def ledger(artifacts: ArtifactStore) -> BatchLedger:
    return BatchLedger(artifacts.path("batches"))


def batch_of(instance: dg.DagsterInstance, frame: pd.DataFrame) -> Batch:
    """The batch behind the latest raw_batch value, rebuilt from its metadata, with its bytes re-read from
    the source when it came from a file (so what is kept is what arrived)."""
    event = instance.get_latest_materialization_event(RAW_BATCH)
    if event is None or event.asset_materialization is None:
        raise LookupError("raw_batch has never been materialized")
    metadata = {key: getattr(value, "value", value) for key, value in event.asset_materialization.metadata.items()}
    payload = None
    source_path = metadata.get("source_path") or None
    if source_path:
        import fsspec

        filesystem, path = fsspec.core.url_to_fs(metadata["batch"])
        if filesystem.exists(path):
            with filesystem.open(path, "rb") as handle:
                payload = handle.read()
    return Batch(
        batch_id=metadata["batch_id"],
        name=metadata["batch"],
        source_path=source_path,
        frame=frame,
        payload=payload,
        appends=bool(metadata["appends"]),
    )


@contextlib.contextmanager
def local_folder(artifacts: ArtifactStore, *parts: str) -> Iterator[tuple[Path, str]]:
    """A local folder to write many files into, and where they end up: the folder itself for a local
    artifact root, or a temporary folder uploaded file by file to object storage on exit."""
    target: UPath = artifacts.path(*parts)
    if is_local(target):
        Path(target.path).mkdir(parents=True, exist_ok=True)
        yield Path(target.path), str(target)
        return
    staging = Path(tempfile.mkdtemp(prefix="mlplatform-"))
    try:
        yield staging, str(target)
        for file in staging.rglob("*"):
            if file.is_file():
                write_atomically(target.joinpath(*file.relative_to(staging).parts), file.read_bytes())
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def latest_data_version(instance: dg.DagsterInstance, asset: str = "accepted_data") -> str:
    """The data version recorded by the asset's latest materialization: accepted_data's is the current
    training data; cleaned_data's is what the latest model was trained on (a reproduction may rebuild an
    older one)."""
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    if event is None or event.asset_materialization is None:
        raise LookupError(f"{asset} has never been materialized: there is no training data to trace")
    return str(event.asset_materialization.metadata["data_version"].value)
