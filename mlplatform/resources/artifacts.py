"""Artifact storage: a local folder or an S3 prefix, through one path type (universal_pathlib).

``ArtifactStore`` writes files people open (reports, plots); ``ArtifactIOManager`` stores asset values:
DataFrames as Parquet, everything else with joblib. Local writes go to a temporary name first and are
renamed into place, so a crash never leaves a half-written artifact where a reader would find it.
"""

from __future__ import annotations

import io
import os
import uuid

import dagster as dg
import joblib
import pandas as pd
from upath import UPath


def write_atomically(path: UPath, payload: bytes) -> None:
    if path.protocol in ("", "file", "local"):
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        temporary.write_bytes(payload)
        os.replace(temporary.path, path.path)
    else:  # an object store's PUT is atomic: readers see the old object or the new one
        path.write_bytes(payload)


class ArtifactStore(dg.ConfigurableResource):
    """Files for people: evaluation reports and plots, under ``root`` (a folder or s3://bucket/prefix)."""

    root: str

    def path(self, *parts: str) -> UPath:
        return UPath(self.root).joinpath(*parts)

    def write_bytes(self, payload: bytes, *parts: str) -> str:
        target = self.path(*parts)
        write_atomically(target, payload)
        return str(target)


class ArtifactIOManager(dg.ConfigurableIOManager):
    """Stores each asset's latest value under ``root``/assets: Parquet for DataFrames, joblib otherwise."""

    root: str

    def _base(self, context: dg.InputContext | dg.OutputContext) -> UPath:
        return UPath(self.root).joinpath("assets", *context.asset_key.path)

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        base = self._base(context)
        buffer = io.BytesIO()
        if isinstance(obj, pd.DataFrame):
            target = base.with_name(base.name + ".parquet")
            obj.to_parquet(buffer, index=False)
        else:
            target = base.with_name(base.name + ".joblib")
            joblib.dump(obj, buffer)
        write_atomically(target, buffer.getvalue())
        context.add_output_metadata({"path": dg.MetadataValue.path(str(target))})

    def load_input(self, context: dg.InputContext) -> object:
        base = self._base(context)
        parquet = base.with_name(base.name + ".parquet")
        if parquet.exists():
            return pd.read_parquet(io.BytesIO(parquet.read_bytes()))
        stored = base.with_name(base.name + ".joblib")
        if not stored.exists():
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()} has not been materialized under {self.root} "
                f"(looked for {parquet} and {stored})"
            )
        return joblib.load(io.BytesIO(stored.read_bytes()))
