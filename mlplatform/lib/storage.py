"""Writing files so that no reader ever sees half of one: locally through a temporary name and a rename,
in object storage through a single PUT. Paths are universal_pathlib paths: a local folder or s3://."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass

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


class WriteConflict(RuntimeError):
    """Another writer changed a file between our read and our conditional write; nothing of ours was written."""


@dataclass(frozen=True)
class Snapshot:
    """A file's content as read, with the version a conditional write compares: the object's ETag in object
    storage, a hash of the content locally; both None when there was no file."""

    payload: bytes | None
    version: str | None


def read_snapshot(path: UPath) -> Snapshot:
    if is_local(path):
        try:
            payload = path.read_bytes()
        except FileNotFoundError:
            return Snapshot(None, None)
        return Snapshot(payload, hashlib.sha256(payload).hexdigest())
    if path.protocol not in ("s3", "s3a"):
        raise ValueError(f"{path}: conditional writes need a local folder or S3 (an ETag and a conditional PUT)")
    path.fs.invalidate_cache(path.path)  # s3fs answers from listings it cached, which other writers outdate
    try:
        # The ETag first: should the object change before the GET, the write conditional on this ETag fails
        # rather than overwrite content nobody read.
        etag = path.fs.info(path.path)["ETag"]
        return Snapshot(path.fs.cat_file(path.path), etag)
    except FileNotFoundError:
        return Snapshot(None, None)


def write_if_unchanged(path: UPath, payload: bytes, read: Snapshot) -> None:
    """Write ``payload`` atomically, only if the file is still as ``read`` saw it (still absent, if it was):
    of two writers that read the same version, one writes and the other gets WriteConflict. In object storage
    it is one conditional PUT (If-Match on the ETag, If-None-Match for a new object); locally a compare and a
    rename under an exclusive lock on a file beside it."""
    if is_local(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(f".{path.name}.lock").path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if read_snapshot(path).version != read.version:
                raise _conflict(path)
            write_atomically(path, payload)
        return
    condition = {"IfMatch": read.version} if read.version else {"IfNoneMatch": "*"}
    try:
        path.fs.pipe_file(path.path, payload, **condition)
    except OSError as exc:
        if not _precondition_failed(exc):
            raise
        raise _conflict(path) from exc


def _precondition_failed(exc: OSError) -> bool:
    """s3fs turns S3's 412 into FileExistsError (If-None-Match) or an EINVAL OSError caused by the ClientError."""
    if isinstance(exc, FileExistsError):
        return True
    response = getattr(exc.__cause__, "response", None) or {}
    return exc.errno == errno.EINVAL and response.get("Error", {}).get("Code") == "PreconditionFailed"


def _conflict(path: UPath) -> WriteConflict:
    return WriteConflict(f"{path} changed since it was read: another writer got there first; nothing was written")


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
