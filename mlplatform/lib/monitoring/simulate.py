"""A deployed project's life, simulated, so that the loop can be watched without real users: new batches for a
folder source, traffic for the served model, and the labels of what was sent. Rows are drawn from the data the
spec's source already holds, so it works for any spec, classification or regression.

Drift moves each numeric input by ``sigmas`` of its standard deviation (integers stay integers) and turns each
categorical input's mix around (the rarest value becomes the commonest; only values the data holds, so the
served model's typed requests accept them). The target is left as it was: a model that learned the old inputs
now meets rows it was not trained for, which is what decay looks like once their labels land.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from pandas.api import types

from mlplatform.lib.monitoring.labels import REQUEST_ID, REQUEST_ROW
from mlplatform.lib.spec import ProjectSpec

# New rows of a landed batch differ from the rows they were drawn from by this share of each number's standard
# deviation: enough that cleaning does not drop them as duplicates, far too little to look like drift.
JITTER = 0.02


class SimulationError(ValueError):
    """What was asked cannot be simulated here; the message says why and what to do."""


@dataclass(frozen=True)
class Inputs:
    """The model-input columns of a frame, by kind."""

    numbers: tuple[str, ...]
    categories: tuple[str, ...]


def inputs(frame: pd.DataFrame, spec: ProjectSpec) -> Inputs:
    excluded = {*spec.problem.excluded_columns, *spec.problem.drop_columns}
    columns = [c for c in frame.columns if c not in excluded]
    numbers = tuple(c for c in columns if types.is_numeric_dtype(frame[c]) and not types.is_bool_dtype(frame[c]))
    return Inputs(numbers, tuple(c for c in columns if c not in numbers))


def draw(frame: pd.DataFrame, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """``rows`` rows drawn with replacement."""
    if frame.empty:
        raise SimulationError("the source holds no rows to draw from")
    return frame.iloc[rng.integers(0, len(frame), size=rows)].reset_index(drop=True)


def shifted(
    rows: pd.DataFrame, reference: pd.DataFrame, spec: ProjectSpec, sigmas: float, rng: np.random.Generator
) -> pd.DataFrame:
    """``rows`` with every numeric input moved by ``sigmas`` standard deviations of ``reference`` and every
    categorical input drawn from ``reference``'s values with their frequencies reversed."""
    rows = rows.copy()
    columns = inputs(reference, spec)
    for column in columns.numbers:
        rows[column] = _as_column_type(rows[column] + sigmas * _spread(reference[column]), reference[column])
    for column in columns.categories:
        counts = reference[column].value_counts()
        if len(counts) < 2:
            continue
        reversed_share = counts.to_numpy()[::-1] / counts.sum()
        present = rows[column].notna()
        drawn = rng.choice(counts.index.to_numpy(), size=int(present.sum()), p=reversed_share)
        rows.loc[present, column] = drawn
    return rows


def jittered(rows: pd.DataFrame, reference: pd.DataFrame, spec: ProjectSpec, rng: np.random.Generator) -> pd.DataFrame:
    """``rows`` with a little noise on each float input, so that drawn rows are new rows."""
    rows = rows.copy()
    for column in inputs(reference, spec).numbers:
        if types.is_float_dtype(reference[column]):
            noise = rng.normal(0.0, JITTER * _spread(reference[column]), size=len(rows))
            rows[column] = _as_column_type(rows[column] + noise, reference[column])
    return rows


def new_batch(
    raw: pd.DataFrame, spec: ProjectSpec, rows: int, *, sigmas: float, rng: np.random.Generator, now: datetime
) -> pd.DataFrame:
    """A batch of ``rows`` new rows for the source, in its columns: drawn from ``raw``, jittered, shifted when
    ``sigmas`` is not 0, with ids of their own (an id names one row) and the time column at ``now``."""
    batch = jittered(draw(raw, rows, rng), raw, spec, rng)
    if sigmas:
        batch = shifted(batch, raw, spec, sigmas, rng)
    id_column, time_column = spec.problem.id_column, spec.problem.time_column
    if id_column:
        batch[id_column] = _fresh_ids(raw[id_column], rows, now)
    if time_column:
        batch[time_column] = now.isoformat(timespec="seconds")
    return batch


def _fresh_ids(existing: pd.Series, rows: int, now: datetime) -> pd.Series:
    if types.is_integer_dtype(existing) or (types.is_float_dtype(existing) and existing.dropna().mod(1).eq(0).all()):
        start = int(existing.max()) + 1 if existing.notna().any() else 1
        return pd.Series(np.arange(start, start + rows), dtype="int64")
    return pd.Series([f"sim-{now:%Y%m%dT%H%M%S}-{i}" for i in range(rows)], dtype=object)


def servable(rows: pd.DataFrame, schema: dict) -> pd.DataFrame:
    """``rows`` as the served model's typed requests accept them: a category it never learned (the data may have
    grown since it was trained) becomes missing, which every request may send."""
    rows = rows.copy()
    for column in schema["columns"]:
        if column["kind"] == "category" and column["name"] in rows.columns:
            values = rows[column["name"]]
            rows[column["name"]] = values.where(values.isna() | values.astype(str).isin(column["categories"]))
    return rows


def labels_for(sent: pd.DataFrame, answers: list[tuple[str, int]], spec: ProjectSpec, by: str) -> pd.DataFrame:
    """The label file for ``sent`` rows (with their target), answered under ``answers`` (each row's request id
    and position): joined by ``by``, the id column or request_id."""
    target = spec.problem.target
    if by == REQUEST_ID:
        return pd.DataFrame(
            {
                REQUEST_ID: [request_id for request_id, _ in answers],
                REQUEST_ROW: [row for _, row in answers],
                target: sent[target].to_numpy(),
            }
        )
    return sent[[by, target]].dropna(subset=[by]).drop_duplicates(subset=[by], keep="last").reset_index(drop=True)


def _spread(values: pd.Series) -> float:
    spread = float(values.std())
    return spread if np.isfinite(spread) and spread > 0 else 1.0


def _as_column_type(values: pd.Series, like: pd.Series) -> pd.Series:
    """Numbers written as the column writes them: integers as integers, decimals to as many places."""
    if types.is_integer_dtype(like):
        return values.round().astype(like.dtype)
    return values.round(_decimals(like))


def _decimals(values: pd.Series, most: int = 6) -> int:
    present = values.dropna().to_numpy(dtype=float)[:1000]
    for places in range(most):
        scaled = present * 10**places
        if np.allclose(scaled, scaled.round(), rtol=0, atol=1e-6):
            return places
    return most
