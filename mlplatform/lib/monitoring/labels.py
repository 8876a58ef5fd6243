"""Ground truth for served predictions: files landed in ``monitoring.labels.uri``, a folder or an S3 prefix of
CSV, Parquet or JSON files (read by the ingestion readers, so the same formats and encodings work).

Each file holds the join column and the target:

- ``problem.id_column`` when the requests carried it (the service logs it with each prediction), or
- ``request_id``, as the service answered it, and for a batch request ``request_row``: the row's position in
  the request, from 0 (a label without one is for a single-row request).

``monitoring.labels.id_column`` chooses between the two; by default the id column when the spec names one.
Files are read in name order, every time, so a later file corrects an earlier label. A file that cannot be used
(unreadable, a column missing, a label without its id, a row position that is no position) is left out and
named, with the column and the reason, in ``Labels.problems``: the other files still count, and the file
stays where it landed until someone fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from mlplatform.lib.data import ingest
from mlplatform.lib.data.cleaning import CleaningError, coerce_target
from mlplatform.lib.spec import ProjectSpec, Source

REQUEST_ID = "request_id"
REQUEST_ROW = "request_row"
FIELD = "monitoring.labels"


class LabelError(ValueError):
    """A label file that cannot be used; the message names the file and the column."""


@dataclass(frozen=True)
class Labels:
    """Every usable label, in landing order: ``key`` (the join column's value as text), ``request_row`` (Int64,
    missing where not given or not joining by request id), ``truth`` (text classes, or numbers) and ``file``."""

    by: str  # the join column: problem.id_column, or request_id
    frame: pd.DataFrame
    files: int  # label files found
    problems: tuple[str, ...] = ()  # one line per file (or part of one) left out: file, column, reason
    without_truth: int = 0  # rows naming a prediction but holding no target yet


def join_column(spec: ProjectSpec) -> str:
    """The column labels are joined to predictions by: the spec's choice, else its id column, else request_id."""
    labels = spec.monitoring.labels
    chosen = labels.id_column if labels is not None else None
    return chosen or spec.problem.id_column or REQUEST_ID


def empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "key": pd.Series(dtype=object),
            REQUEST_ROW: pd.Series(dtype="Int64"),
            "truth": pd.Series(dtype=object),
            "file": pd.Series(dtype=object),
        }
    )


def read_labels(spec: ProjectSpec) -> Labels:
    """Every label file under ``monitoring.labels.uri``. No folder (or no object under the prefix) yet is no
    labels; an unreachable store raises ``ingest.IngestionError`` naming ``monitoring.labels.uri``."""
    if spec.monitoring.labels is None:
        raise LabelError(f"{FIELD}: the spec names no place where labels land (monitoring.labels.uri)")
    by = join_column(spec)
    source = Source(uri=spec.monitoring.labels.uri)
    try:
        files = ingest.list_files(spec, source, field=FIELD)
    except ingest.SourceNotFound:
        return Labels(by, empty(), files=0)
    frames, problems, without_truth = [], [], 0
    for index, name in enumerate(files.names):
        try:
            # request ids are text, however numeric one looks ("17851957467e-1"); an id column keeps the
            # readers' types, which as_keys turns into the text the log holds (1042.0 -> "1042")
            text = (REQUEST_ID,) if by == REQUEST_ID else ()
            frame, _ = ingest.read_file(spec, files, index, source=source, field=FIELD, text_columns=text)
            checked, lost = _checked(frame, name, spec, by)
        except (ingest.IngestionError, LabelError) as exc:
            problems.append(str(exc))
            continue
        if lost:
            problems.append(lost)
        without_truth += int(checked["truth"].isna().sum())
        frames.append(checked.dropna(subset=["truth"]))
    frame = pd.concat(frames, ignore_index=True) if frames else empty()
    return Labels(by, frame, files=len(files.names), problems=tuple(problems), without_truth=without_truth)


def _checked(frame: pd.DataFrame, name: str, spec: ProjectSpec, by: str) -> tuple[pd.DataFrame, str | None]:
    """One file's labels as ``Labels.frame`` rows, and a note of target values that were no labels, if any."""
    target, task = spec.problem.target, spec.problem.task
    for column in (by, target):
        if column not in frame.columns:
            shown = ", ".join(map(repr, map(str, frame.columns)))
            raise LabelError(
                f"{name}: no column {column!r} ({FIELD} joins on {by!r} and needs the target; has {shown})"
            )
    keys = as_keys(frame[by], by)
    if keys.isna().any():
        raise LabelError(f"{name}: column {by!r}: {int(keys.isna().sum())} row(s) name no prediction (empty {by})")
    positions = pd.Series(pd.NA, index=frame.index, dtype="Int64")
    if by == REQUEST_ID and REQUEST_ROW in frame.columns:
        positions = _positions(frame[REQUEST_ROW], name)
    try:
        truth, _ = coerce_target(frame[target], task, target)
    except CleaningError as exc:
        raise LabelError(f"{name}: {exc}") from None
    lost = None
    unparseable = frame[target].notna() & truth.isna()
    if unparseable.any():  # a regression target a few of whose values are not numbers: those rows are left out
        sample = ", ".join(map(repr, frame.loc[unparseable, target].unique()[:5].tolist()))
        lost = f"{name}: column {target!r}: {int(unparseable.sum())} value(s) are not numbers, left out ({sample})"
    checked = pd.DataFrame({"key": keys, REQUEST_ROW: positions, "truth": truth, "file": name})
    return checked.reset_index(drop=True), lost


def as_keys(values: pd.Series, column: str) -> pd.Series:
    """Join-column values as the prediction log holds them: text, integers written without a decimal point
    (``1042``, also from a column with gaps that made it ``1042.0``), missing as None."""
    text, _ = coerce_target(values, "classification", column)
    return text.astype(object).where(text.notna(), None).map(lambda value: value if value is None else str(value))


def _positions(values: pd.Series, name: str) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & (numbers.isna() | (numbers < 0) | (numbers != numbers.round()))
    if bad.any():
        sample = ", ".join(map(repr, values[bad].unique()[:5].tolist()))
        raise LabelError(
            f"{name}: column {REQUEST_ROW!r} must hold each row's position in its request (0, 1, ...); "
            f"{int(bad.sum())} value(s) do not ({sample})"
        )
    return numbers.astype("Int64")
