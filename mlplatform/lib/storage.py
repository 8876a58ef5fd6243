"""Writing files so that no reader ever sees half of one: locally through a temporary name and a rename,
in object storage through a single PUT. Paths are universal_pathlib paths: a local folder or s3://."""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Callable

import pandas as pd
from pandas.api import types
from upath import UPath


def is_local(path: UPath) -> bool:
    return path.protocol in ("", "file", "local")


def write_atomically(path: UPath, payload: bytes | Callable[[str], None]) -> None:
    """Write ``payload``, or let it write itself to the local file name it is given, atomically."""
    if is_local(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        try:
            if callable(payload):
                payload(temporary.path)
            else:
                temporary.write_bytes(payload)
            os.replace(temporary.path, path.path)
        finally:
            temporary.unlink(missing_ok=True)
    else:  # an object store's PUT is atomic: readers see the old object or the new one
        if callable(payload):
            buffer = io.BytesIO()
            payload(buffer)
            payload = buffer.getvalue()
        path.write_bytes(payload)


def write_parquet(frame: pd.DataFrame, destination) -> None:
    # Min/max statistics of text columns cost a fifth of the write at a million rows and serve no reader
    # of these one-row-group files; numeric, date and boolean columns keep theirs.
    statistics = [str(name) for name, dtype in frame.dtypes.items() if not types.is_string_dtype(dtype)]
    frame.to_parquet(destination, index=False, write_statistics=statistics)


def write_frame(path: UPath, frame: pd.DataFrame) -> None:
    write_atomically(path, lambda destination: write_parquet(frame, destination))


def read_frame(path: UPath) -> pd.DataFrame:
    if is_local(path):
        return pd.read_parquet(path.path)
    return pd.read_parquet(io.BytesIO(path.read_bytes()))


def write_json(path: UPath, document: object) -> None:
    write_atomically(path, json.dumps(document, indent=2, default=str).encode())


def read_json(path: UPath) -> object:
    return json.loads(path.read_text())
