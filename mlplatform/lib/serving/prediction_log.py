"""The prediction log: what the served model was asked and what it answered, for the drift monitor.

Requests hand their rows to an in-memory queue (a few microseconds, never a file operation); a background
thread turns what has queued into one Parquet file per flush, every ``flush_seconds`` or once ``flush_rows``
rows wait (checked twice a second), and once more when the service stops. Files appear whole (temporary
name, then rename) under ``<folder>/<project>/date=<YYYY-MM-DD>/``, one row per predicted row:

- the input columns under their own names and with the training frame's types (numbers as float64,
  categories as strings, booleans as booleans), so the monitor compares them with training data as they are;
- the spec's id column (``id_column`` in the schema), as text, when the model has one: null for a request
  that did not carry it;
- ``prediction`` (and ``probability_<class>`` for classifiers), ``model_tag``, ``endpoint``, ``request_id``
  (the id the service answered with; rows of one batch request share it), ``request_row`` (the row's position
  in its request, 0 for a single row), ``latency_ms`` (the request's, batching wait included) and
  ``logged_at`` (UTC).

Labels are joined to predictions by the id column, or by ``request_id`` and ``request_row``
(``mlplatform.lib.monitoring.performance``).
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from mlplatform.lib.storage import write_atomically

logger = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("prediction", "model_tag", "endpoint", "request_id", "request_row", "latency_ms", "logged_at")
PROBABILITY_PREFIX = "probability_"
POLL_SECONDS = 0.5  # how often the writer looks at the queue, at most


class PredictionLogError(ValueError):
    """The log cannot be written as configured; the message names the column or folder."""


class RequestIds:
    """Request ids, unique across processes and restarts, at the cost of a counter per request: a random prefix
    drawn once (a system call, where ``uuid4`` per request would make one each time), then a count in hex.

    The prefix always holds a letter other than ``e``: ``17851957467e-1`` would be a number to a spreadsheet or
    a CSV reader, and a label file carrying it would be read back as 1785195746.7 (1 prefix in ~3,000)."""

    def __init__(self, draw: Callable[[int], str] = secrets.token_hex) -> None:
        self.prefix = draw(6)
        while not set(self.prefix) & set("abcdf"):
            self.prefix = draw(6)
        self._counter = itertools.count(1)  # next() on it is atomic under the GIL: no lock between threads

    def next(self) -> str:
        return f"{self.prefix}-{next(self._counter):x}"


@dataclass(frozen=True)
class _Entry:
    rows: Sequence[dict]
    outputs: Sequence[dict]  # mlplatform.lib.serving.serving.RowPrediction: prediction, probabilities
    endpoint: str
    latency_ms: float
    logged_at: datetime
    request_id: str


class PredictionLog:
    """Appends predictions in batches, off the request path. ``append`` never blocks and never raises for a
    full queue: past ``max_queued_rows`` waiting rows it drops the entry (a slow disk must not slow
    predictions). Dropped rows, and rows of a file that could not be written, are counted in
    ``dropped_rows`` and reported to ``on_drop``; ``close`` writes what is left."""

    def __init__(
        self,
        folder: str | Path,
        *,
        schema: dict,
        model_tag: str,
        flush_seconds: float = 5.0,
        flush_rows: int = 10_000,
        max_queued_rows: int = 200_000,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.folder = UPath(folder) / schema["project"]
        self.model_tag = model_tag
        self.columns = schema["columns"]
        self.classes = list(schema.get("classes") or [])
        self.id_column: str | None = schema.get("id_column")
        named = [column["name"] for column in self.columns] + ([self.id_column] if self.id_column else [])
        clashes = set(named) & {*OUTPUT_COLUMNS, *self._probability_columns()}
        if clashes:
            raise PredictionLogError(f"input column(s) {sorted(clashes)} clash with the prediction log's own columns")
        self.request_ids = RequestIds()
        self.flush_seconds, self.flush_rows, self.max_queued_rows = flush_seconds, flush_rows, max_queued_rows
        self.dropped_rows = 0
        self.files_written = 0
        self._on_drop = on_drop  # told how many rows were lost, from either thread, for metrics
        self._queue: queue.SimpleQueue[_Entry] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards the two counters, which the request side and the thread update
        self._queued_rows = 0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def append(
        self,
        rows: Sequence[dict],
        outputs: Sequence,
        *,
        endpoint: str,
        latency_ms: float,
        request_id: str | None = None,
    ) -> bool:
        """Queue one request's rows and answers, under the id the request was answered with (a new one from
        ``request_ids`` when none is given); False when the queue was full and they were dropped."""
        with self._lock:
            full = self._queued_rows + len(rows) > self.max_queued_rows
            if not full:
                self._queued_rows += len(rows)
        if full:
            self._dropped(len(rows))
            return False
        request_id = request_id or self.request_ids.next()
        self._queue.put(_Entry(rows, outputs, endpoint, latency_ms, datetime.now(UTC), request_id))
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued and stop the thread."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(timeout)

    def _run(self) -> None:
        # The thread wakes a few times a second and drains the queue, rather than blocking on it: a blocked
        # reader would be woken by every request, and each wake-up takes the GIL from the event loop.
        pending: list[_Entry] = []
        rows = 0
        last_flush = time.monotonic()
        stopping = False
        while not stopping:
            stopping = self._stop.wait(min(self.flush_seconds, POLL_SECONDS))
            while True:
                try:
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    break
                pending.append(entry)
                rows += len(entry.rows)
            if pending and (stopping or rows >= self.flush_rows or time.monotonic() - last_flush >= self.flush_seconds):
                self._flush(pending)
                with self._lock:
                    self._queued_rows -= rows
                pending, rows = [], 0
                last_flush = time.monotonic()

    def _flush(self, entries: list[_Entry]) -> None:
        try:
            table = self.table(entries)
            stamp = entries[0].logged_at
            name = f"{stamp:%Y%m%dT%H%M%S%fZ}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
            # pyarrow releases the GIL while it encodes and writes
            write_atomically(self.folder / f"date={stamp:%Y-%m-%d}" / name, lambda dest: pq.write_table(table, dest))
            self.files_written += 1
        except Exception:  # the log must never take the service down; the loss is reported
            self._dropped(sum(len(entry.rows) for entry in entries))
            logger.exception("prediction log: could not write %d entries to %s", len(entries), self.folder)

    def _dropped(self, rows: int) -> None:
        with self._lock:
            self.dropped_rows += rows
        if self._on_drop is not None:
            self._on_drop(rows)

    def table(self, entries: Sequence[_Entry]) -> pa.Table:
        """The entries as one Arrow table, built straight from the Python values: a flush holds the GIL
        (which the event loop and the model thread need) about half as long as building a DataFrame would."""
        rows = [row for entry in entries for row in entry.rows]
        outputs = [output for entry in entries for output in entry.outputs]
        counts = [len(entry.rows) for entry in entries]
        columns: dict[str, pa.Array] = {}
        for column in self.columns:
            columns[column["name"]] = pa.array([row[column["name"]] for row in rows], type=_arrow_type(column))
        if self.id_column:
            ids = [row.get(self.id_column) for row in rows]
            columns[self.id_column] = pa.array([None if v is None else str(v) for v in ids], type=pa.string())
        predictions = [output["prediction"] for output in outputs]
        columns["prediction"] = pa.array(predictions, type=pa.string() if self.classes else pa.float64())
        for name in self.classes:
            probabilities = [(output["probabilities"] or {}).get(name) for output in outputs]
            columns[f"{PROBABILITY_PREFIX}{name}"] = pa.array(probabilities, type=pa.float64())
        columns["model_tag"] = pa.array(np.repeat(self.model_tag, len(rows)), type=pa.string())
        columns["endpoint"] = pa.array(np.repeat([e.endpoint for e in entries], counts), type=pa.string())
        columns["request_id"] = pa.array(np.repeat([e.request_id for e in entries], counts), type=pa.string())
        columns["request_row"] = pa.array(np.concatenate([np.arange(count) for count in counts]), type=pa.int32())
        columns["latency_ms"] = pa.array(np.repeat([e.latency_ms for e in entries], counts), type=pa.float64())
        logged_at = np.repeat(np.array([e.logged_at.replace(tzinfo=None) for e in entries], "datetime64[us]"), counts)
        columns["logged_at"] = pa.array(logged_at, type=pa.timestamp("us", tz="UTC"))
        return pa.table(columns)

    def _probability_columns(self) -> list[str]:
        return [f"{PROBABILITY_PREFIX}{name}" for name in self.classes]


def _arrow_type(column: dict) -> pa.DataType:
    if column["kind"] == "number":
        return pa.int64() if column["type"] == "integer" else pa.float64()
    return pa.bool_() if column["type"] == "bool" else pa.string()


def read_prediction_log(
    folder: str | Path, project: str, *, since: datetime | None = None, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Every logged prediction of a project, in the order logged (an empty frame when none was logged); with
    ``since`` (aware), only the rows logged then or later, reading no day folder before it; with ``columns``,
    only those columns.

    Each worker writes its own files, each named for its first row, so one file can hold rows logged after
    another worker's next file began: the rows are put in ``logged_at`` order (stably, keeping a request's rows
    together), not left in file order."""
    root = UPath(folder) / project
    if not root.exists():
        return pd.DataFrame()
    first_day = f"date={since.astimezone(UTC):%Y-%m-%d}" if since is not None else ""
    files = sorted(
        (
            path
            for path in root.glob("date=*/*.parquet")
            if not path.name.startswith(".") and path.parent.name >= first_day
        ),
        key=lambda p: p.name,
    )
    if not files:
        return pd.DataFrame()
    filters = [("logged_at", ">=", pd.Timestamp(since).tz_convert(UTC))] if since is not None else None
    wanted = None if columns is None else dict.fromkeys([*columns, "logged_at"])  # logged_at orders the rows
    frames = []
    for path in files:
        with path.open("rb") as file:  # a local file or an object in S3 alike
            # a file of another model version may lack a column asked for: it comes out missing in those rows
            held = None if wanted is None else [c for c in wanted if c in pq.read_schema(file).names]
            file.seek(0)
            frames.append(pd.read_parquet(file, dtype_backend="numpy_nullable", columns=held, filters=filters))
    frame = pd.concat(frames, ignore_index=True).sort_values("logged_at", kind="stable", ignore_index=True)
    return frame if columns is None else frame[[c for c in columns if c in frame.columns]]
