"""Batches: what arrives from the source, what joins the training data, and what is kept aside and why.

Two kinds of source (``source.mode``):

- **snapshot** (a file, an HTTP endpoint, a SQL query): each read is the whole dataset. Once it passes its
  checks it *replaces* the last accepted snapshot. A rejected snapshot is copied to quarantine; the source
  is left alone (it is not ours to move) and the last accepted snapshot stays the training data.
- **batches** (a folder or S3 prefix): each file is a batch, validated on its own, oldest name first, one
  per run. An accepted batch is *appended* to the training data; a rejected file is moved out of the
  landing folder into quarantine, so it is neither lost nor picked up again.

The ledger under the artifact root records all of it (``batches/``): accepted batches as they arrived and
as Parquet, a manifest written last (so a crash leaves no half-accepted batch), and the quarantine with a
``reason.json`` beside each rejected batch.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import PurePosixPath

import pandas as pd
import pyarrow.parquet as pq
from upath import UPath

from mlplatform.lib.data import ingest, schema
from mlplatform.lib.spec import ProjectSpec
from mlplatform.lib.storage import read_frame, read_json, write_atomically, write_frame, write_json


@dataclass(frozen=True)
class Batch:
    batch_id: str  # a content hash of the bytes as they arrived (of the rows, for SQL)
    name: str  # the file, object or URL, as people read it
    source_path: str | None  # the file in the source's filesystem, for files and objects
    frame: pd.DataFrame | None  # None when the bytes could not be parsed
    payload: bytes | None  # the bytes as they arrived; None for SQL
    appends: bool  # True for a batch from a folder, False for a snapshot

    @property
    def file_name(self) -> str:
        return PurePosixPath(self.name.split("?")[0]).name or "payload"


class UnreadableBatch(ingest.IngestionError):
    """A batch whose bytes arrived but could not be parsed; it carries them so they can be quarantined."""

    def __init__(self, message: str, batch: Batch) -> None:
        super().__init__(message)
        self.batch = batch


class RejectedBatch(ValueError):
    """A batch that cannot join the training data (a quarantined one offered again, say)."""


class UnknownDataVersion(LookupError):
    """A data version the ledger never recorded; the message names the ones it did."""


class QuarantinedBatch(RejectedBatch):
    """A batch that could not be read, or could not join the training data, now kept in quarantine with its
    reason: a rejection of the data, not a failure of the platform."""


def content_id(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()[:16]


def appends(spec: ProjectSpec, files: ingest.DataFiles | None) -> bool:
    if spec.source.mode != "auto":
        return spec.source.mode == "batches"
    return files is not None and files.is_folder


def arriving_batch(spec: ProjectSpec, ledger: BatchLedger, file: str = "") -> Batch | None:
    """The next batch to validate: the whole source for a snapshot; for batches, ``file`` (as
    ``new_arrivals`` names it) or else the oldest new file (None when every file has been accepted or
    quarantined)."""
    if spec.source.kind in ("http", "sql"):
        frame = ingest.read_source(spec)
        return Batch(ingest.data_version(frame), spec.source.uri, None, frame, None, appends=False)
    files = ingest.list_files(spec)
    if not appends(spec, files):
        if len(files.paths) != 1:
            frame = ingest.read_source(spec)
            return Batch(ingest.data_version(frame), files.location, None, frame, None, appends=False)
        return _read_one(spec, files, 0, appends=False)
    arrivals = new_arrivals(spec, ledger, files)
    if file:
        named = [arrival for arrival in arrivals if file in (arrival.name, arrival.path)]
        if not named:
            where = [arrival.name for arrival in arrivals] or "none"
            raise ingest.IngestionError(f"{file}: not a new file of {spec.source.uri!r} (new files: {where})")
        arrivals = named
    return _read_one(spec, files, files.paths.index(arrivals[0].path), appends=True) if arrivals else None


@dataclass(frozen=True)
class Arrival:
    """A data file the source holds, and the hash of its bytes."""

    name: str  # as people read it (s3://bucket/key for object storage)
    path: str  # as the filesystem names it
    batch_id: str  # the hash of its bytes


def new_arrivals(spec: ProjectSpec, ledger: BatchLedger, files: ingest.DataFiles | None = None) -> list[Arrival]:
    """The folder's new files, oldest name first: those whose content was neither accepted nor quarantined."""
    return unknown(ledger, landed_files(spec, ledger, files))


def unknown(ledger: BatchLedger, landed: list[Arrival]) -> list[Arrival]:
    """The files whose content the ledger has neither accepted nor quarantined."""
    accepted = {entry["batch_id"] for entry in ledger.manifest()}  # read once, not once per file
    return [a for a in landed if a.batch_id not in accepted and not ledger.quarantined_batch(a.batch_id)]


def landed_files(spec: ProjectSpec, ledger: BatchLedger, files: ingest.DataFiles | None = None) -> list[Arrival]:
    """Every data file the source holds now, oldest name first, with the hash of its content. A file is read
    (and hashed) only when its size or time of change differs from when it was last seen, so the files already
    accepted are not read again on every run, nor on every tick of the sensor watching the source."""
    files = files or ingest.list_files(spec)
    seen = ledger.seen_files()
    landed, changed = [], False
    for path, name in zip(files.paths, files.names, strict=True):
        signature = _signature(files.filesystem.info(path))
        known = seen.get(path)
        if known is None or known["signature"] != signature:
            with files.filesystem.open(path, "rb") as handle:
                known = {"signature": signature, "batch_id": content_id(handle.read())}
            seen[path], changed = known, True
        landed.append(Arrival(name, path, known["batch_id"]))
    if changed:
        ledger.remember_files({path: seen[path] for path in files.paths})  # forget files that have gone
    return landed


def _signature(info: dict) -> str:
    """What changes when a file's bytes change: its ETag in object storage, else its size and time of change."""
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return f"etag:{etag}"
    modified = info.get("mtime") or info.get("LastModified") or info.get("created") or ""
    return f"size:{info.get('size')}:modified:{modified}"


def _read_one(
    spec: ProjectSpec, files: ingest.DataFiles, index: int, appends: bool, payload: bytes | None = None
) -> Batch:
    """The file at ``index`` as a batch; its bytes are read once, here or by the caller."""
    path, name = files.paths[index], files.names[index]
    if payload is None:
        with files.filesystem.open(path, "rb") as handle:
            payload = handle.read()
    try:
        frame, _ = ingest.read_file(spec, files, index, payload)
    except ingest.IngestionError as exc:
        raise UnreadableBatch(str(exc), Batch(content_id(payload), name, path, None, payload, appends)) from exc
    return Batch(content_id(payload), name, path, frame, payload, appends)


def _since_last_snapshot(entries: list[dict]) -> list[dict]:
    """The manifest entries whose rows make up the training data: the last snapshot and the batches after it."""
    starts = [i for i, entry in enumerate(entries) if not entry["appends"]]
    return entries[starts[-1] :] if starts else entries


class BatchLedger:
    """Accepted batches, quarantined batches and learned profiles, under one root (a folder or s3://)."""

    def __init__(self, root: UPath) -> None:
        self.root = root

    @property
    def _manifest_path(self) -> UPath:
        return self.root / "manifest.json"

    def manifest(self) -> list[dict]:
        """The accepted batches in the order they were accepted."""
        if not self._manifest_path.exists():
            return []
        return list(read_json(self._manifest_path)["accepted"])

    def knows(self, batch_id: str) -> bool:
        accepted = any(entry["batch_id"] == batch_id for entry in self.manifest())
        return accepted or self.quarantined_batch(batch_id)

    def quarantined_batch(self, batch_id: str) -> bool:
        return (self.root / "quarantine" / batch_id / "reason.json").exists()

    def accept(self, batch: Batch, run_id: str) -> bool:
        """Add a validated batch to the training data; False if it was already there."""
        if batch.frame is None:
            raise ValueError(f"batch {batch.batch_id} ({batch.name}) has no rows to accept")
        reason = self.root / "quarantine" / batch.batch_id / "reason.json"
        if reason.exists():
            raise RejectedBatch(
                f"batch {batch.batch_id} ({batch.name}) was quarantined ({reason}); it cannot join the training "
                f"data. Fix the data and deliver it as a new batch."
            )
        entries = self.manifest()
        if entries and entries[-1]["batch_id"] == batch.batch_id:
            return False
        if batch.appends and any(e["batch_id"] == batch.batch_id for e in _since_last_snapshot(entries)):
            return False  # already in the training data (a, b, then a again): its rows must not count twice
        # The checks should have stopped such a batch; should one slip through, appending it would leave
        # training data that no later run can read. It is quarantined so that it is not offered again.
        problems = schema.conflicts(self.accepted_kinds() if batch.appends else {}, batch.frame)
        if problems:
            reasons = [f"cannot join the training data: {problem}" for problem in problems]
            folder = self.quarantine(batch, {"stage": "acceptance", "reasons": reasons, "run_id": run_id})
            raise QuarantinedBatch(
                f"batch {batch.batch_id} ({batch.name}) {'; '.join(reasons)}. It is kept in quarantine at {folder}"
            )
        folder = self.root / "accepted" / batch.batch_id
        write_frame(folder / "data.parquet", batch.frame)
        if batch.payload is not None:
            write_atomically(folder / "original" / batch.file_name, batch.payload)
        entries = [e for e in entries if e["batch_id"] != batch.batch_id or batch.appends]
        entries.append(
            {
                "batch_id": batch.batch_id,
                "name": batch.name,
                "rows": len(batch.frame),
                "appends": batch.appends,
                "accepted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "run_id": run_id,
            }
        )
        write_json(self._manifest_path, {"accepted": entries})  # last: until now, nothing was accepted
        return True

    def accepted_frame(self) -> pd.DataFrame:
        """The training data: the batches since (and including) the last snapshot, in order."""
        entries = self.manifest()
        if not entries:
            raise LookupError(f"no batch has been accepted yet under {self.root}")
        return self._frame_of([e["batch_id"] for e in _since_last_snapshot(entries)])

    def accepted_kinds(self) -> dict[str, tuple[str, str]]:
        """Column -> (kind, Parquet type) of the training data, from the accepted batches' Parquet footers
        (no rows are read). A column empty in every batch so far is "empty"."""
        entries = _since_last_snapshot(self.manifest())
        kinds: dict[str, tuple[str, str]] = {}
        for entry in entries:
            with (self.root / "accepted" / entry["batch_id"] / "data.parquet").open("rb") as handle:
                found = schema.kinds_of_parquet(pq.ParquetFile(handle).metadata)
            for name, (kind, data_type) in found.items():
                if name not in kinds or kinds[name][0] == schema.EMPTY:
                    kinds[name] = (kind, data_type)
        return kinds

    def record_version(self, data_version: str) -> UPath:
        """Remember which accepted batches make up ``data_version`` (the current training data), so that
        ``frame_at`` can rebuild it exactly after later batches have changed the training data."""
        entries = _since_last_snapshot(self.manifest())
        path = self.root / "versions" / f"{data_version}.json"
        if not path.exists():
            write_json(path, {"data_version": data_version, "batch_ids": [e["batch_id"] for e in entries]})
        return path

    def frame_at(self, data_version: str) -> pd.DataFrame:
        """The training data as it was at a recorded data version."""
        path = self.root / "versions" / f"{data_version}.json"
        if not path.exists():
            known = sorted(p.stem for p in (self.root / "versions").glob("*.json"))
            raise UnknownDataVersion(
                f"data version {data_version!r} was never recorded under {self.root} (recorded: {known or 'none'})"
            )
        return self._frame_of(list(read_json(path)["batch_ids"]))

    def _frame_of(self, batch_ids: list[str]) -> pd.DataFrame:
        frames = [read_frame(self.root / "accepted" / batch_id / "data.parquet") for batch_id in batch_ids]
        if len(frames) == 1:
            return frames[0]
        columns = list(frames[0].columns)
        return pd.concat([frame.reindex(columns=columns) for frame in frames], ignore_index=True)

    def quarantine(self, batch: Batch, reason: dict) -> UPath:
        """Keep a rejected batch aside with its reason; a batch file is then removed from the landing folder,
        so it is moved, never lost. Returns the quarantine folder."""
        folder = self.root / "quarantine" / batch.batch_id
        if batch.payload is not None:
            write_atomically(folder / "original" / batch.file_name, batch.payload)
        if batch.frame is not None:
            write_frame(folder / "data.parquet", batch.frame)
        document = {
            "batch_id": batch.batch_id,
            "source": batch.name,
            "quarantined_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **reason,
        }
        write_json(folder / "reason.json", document)
        if batch.appends and batch.source_path:
            import fsspec

            filesystem, path = fsspec.core.url_to_fs(batch.name)
            filesystem.rm(path)  # only now that its copy and its reason are safely written
        return folder

    def seen_files(self) -> dict[str, dict]:
        """The landing files last listed: path -> their signature and content hash (see ``new_arrivals``)."""
        path = self.root / "landing" / "seen.json"
        return dict(read_json(path)) if path.exists() else {}

    def remember_files(self, seen: dict[str, dict]) -> None:
        write_json(self.root / "landing" / "seen.json", seen)

    def quarantined(self) -> list[dict]:
        folder = self.root / "quarantine"
        if not folder.exists():
            return []
        return [read_json(reason) for reason in sorted(folder.glob("*/reason.json"))]

    def save_profile(self, profile: dict, data_version: str) -> UPath:
        path = self.root / "profiles" / f"{data_version}.json"
        write_json(path, profile)
        write_json(self.root / "profiles" / "current.json", {**profile, "data_version": data_version})
        return path

    def current_profile(self) -> dict | None:
        path = self.root / "profiles" / "current.json"
        return dict(read_json(path)) if path.exists() else None
