"""The train/holdout split and the feature pipeline, fitted on the training split only.

Serving imports this module too: the model that is shipped is ``Pipeline([features, estimator])``, so a
prediction goes through exactly the transformation training used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api import types
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from mlplatform.lib.spec import ProjectSpec

# Categories beyond this many per column, and rarer than MIN_CATEGORY_SHARE, share one "infrequent" slot.
MAX_CATEGORIES = 30
MIN_CATEGORY_SHARE = 0.001


class FeatureError(ValueError):
    """The data cannot be split or turned into features; the message names the column or setting."""


@dataclass(frozen=True)
class SplitSummary:
    strategy: str
    training_rows: int
    holdout_rows: int


# A fixed key, not the split seed: row ids are stored with every model and compared across runs and seeds.
ROW_ID_KEY = "mlplatform--rows"  # pandas takes a 16-byte key
ROW_ID_SCHEME = "rows-v1"  # change it with the hashing below: ids of another scheme are not compared
_MISSING = np.uint64(0x9E3779B97F4A7C15)  # any constant: a missing number or time hashes the same wherever it is
_SCORE_BITS = 53  # a float64 holds 53 bits exactly: the score is the top 53 bits of the mixed hash


@dataclass(frozen=True)
class RowIds:
    """The ids of a frame's rows (``row_ids``) and what they were hashed from: ids taken from other columns
    (another ``id_column``, a column added or dropped) name other rows and must not be compared."""

    values: np.ndarray
    basis: str

    @classmethod
    def of(cls, frame: pd.DataFrame, spec: ProjectSpec) -> RowIds:
        return cls(row_ids(frame, spec), row_id_basis(frame, spec))


def row_ids(frame: pd.DataFrame, spec: ProjectSpec) -> np.ndarray:
    """A stable uint64 identity for each row: the hash of ``problem.id_column`` when the spec names one, else of
    the row's content (every column, in name order). A number hashes by its value whatever the column's dtype,
    so a column that turns from int to float when a later batch brings a missing value keeps its rows' ids."""
    canonical = pd.DataFrame({str(column): _canonical(frame[column]) for column in _identity_columns(frame, spec)})
    hashed = pd.util.hash_pandas_object(canonical, index=False, hash_key=ROW_ID_KEY)
    return hashed.to_numpy(dtype=np.uint64)


def row_id_basis(frame: pd.DataFrame, spec: ProjectSpec) -> str:
    """What ``row_ids`` hashes for this frame, short enough for a model's metadata."""
    columns = _identity_columns(frame, spec)
    if spec.problem.id_column is not None:
        return f"{ROW_ID_SCHEME}: id_column {spec.problem.id_column}"
    names = hashlib.sha256("\x00".join(map(str, columns)).encode()).hexdigest()[:12]
    return f"{ROW_ID_SCHEME}: content of {len(columns)} columns ({names})"


def _identity_columns(frame: pd.DataFrame, spec: ProjectSpec) -> list:
    id_column = spec.problem.id_column
    if id_column is None:
        return sorted(frame.columns, key=str)
    if id_column not in frame.columns:
        raise FeatureError(f"problem.id_column {id_column!r} is not a column of the data")
    return [id_column]


def _canonical(series: pd.Series) -> pd.Series:
    """Each value in a form whose hash depends on the value alone, never on its neighbours or on the dtype a
    batch gave the column: a whole number hashes alike as int or float (a column turns float when a later batch
    brings a missing value), a time as its UTC nanoseconds, anything else as its text."""
    missing = series.isna().to_numpy()
    if types.is_datetime64_any_dtype(series):
        naive = series.dt.tz_convert(None) if series.dt.tz is not None else series
        bits = naive.astype("datetime64[ns]").to_numpy().view(np.int64).view(np.uint64).copy()
    elif types.is_integer_dtype(series):
        bits = series.astype("Int64").to_numpy(dtype=np.int64, na_value=0).view(np.uint64).copy()
    elif types.is_numeric_dtype(series) and not types.is_bool_dtype(series):
        floats = series.to_numpy(dtype="float64", na_value=np.nan)
        whole = np.isfinite(floats) & (floats == np.trunc(floats)) & (np.abs(floats) < 2.0**63)
        bits = floats.view(np.uint64).copy()
        bits[whole] = floats[whole].astype(np.int64).view(np.uint64)
    else:
        return series.astype("string").astype(object).where(~missing, None)
    bits[missing] = _MISSING
    return pd.Series(bits, index=series.index)


def _split_scores(ids: np.ndarray, seed: int) -> np.ndarray:
    """Each id's place in [0, 1), mixed with the seed (splitmix64's finalizer), so another seed draws
    another holdout from the same ids."""
    mixed = ids ^ _mix(np.array([seed % 2**64], dtype=np.uint64))[0]
    return (_mix(mixed) >> np.uint64(64 - _SCORE_BITS)).astype(np.float64) / 2.0**_SCORE_BITS


def _mix(values: np.ndarray) -> np.ndarray:
    values = values.copy()
    values ^= values >> np.uint64(30)
    values *= np.uint64(0xBF58476D1CE4E5B9)
    values ^= values >> np.uint64(27)
    values *= np.uint64(0x94D049BB133111EB)
    values ^= values >> np.uint64(31)
    return values


def split(frame: pd.DataFrame, spec: ProjectSpec) -> tuple[pd.DataFrame, pd.DataFrame, SplitSummary]:
    """A deterministic split: time-ordered when the spec names a time column, else by a seeded hash of each
    row's identity (``row_ids``), so a row keeps its side as data grows and identical rows share one."""
    problem, settings = spec.problem, spec.split
    if len(frame) < 2:
        raise FeatureError(f"cannot split {len(frame)} row(s) into training and holdout sets")
    if problem.time_column:
        ordered = frame.sort_values(problem.time_column, kind="stable")
        cut = len(ordered) - max(1, round(len(ordered) * settings.holdout_fraction))
        train, holdout = ordered.iloc[:cut], ordered.iloc[cut:]
        strategy = f"time-ordered by {problem.time_column}: holdout is the latest {len(holdout)} rows"
    else:
        in_holdout, strategy = _hashed_sides(frame, spec)
        train, holdout = frame[~in_holdout], frame[in_holdout]
    if train.empty or holdout.empty:
        raise FeatureError(
            f"split.holdout_fraction {settings.holdout_fraction} leaves an empty side of {len(frame)} rows"
        )
    summary = SplitSummary(strategy=strategy, training_rows=len(train), holdout_rows=len(holdout))
    return train.reset_index(drop=True), holdout.reset_index(drop=True), summary


def _hashed_sides(frame: pd.DataFrame, spec: ProjectSpec) -> tuple[np.ndarray, str]:
    """Which rows are holdout rows, and the strategy text. Rows move between sides as whole identities (every
    row sharing an id), so a duplicate never sits on both sides."""
    problem, settings = spec.problem, spec.split
    ids = row_ids(frame, spec)
    scores = _split_scores(ids, settings.seed)
    in_holdout = scores < settings.holdout_fraction
    identity = f"id_column {problem.id_column}" if problem.id_column else "each row's content"
    notes = [f"hash of {identity}, seed {settings.seed}: a row keeps its side as data grows"]

    def move(row: int, to_holdout: bool) -> None:
        in_holdout[ids == ids[row]] = to_holdout

    target = frame[problem.target].to_numpy() if problem.task == "classification" else None
    if target is not None:
        for label in pd.unique(frame[problem.target].dropna()):
            rows = np.flatnonzero(target == label)
            if in_holdout[rows].all():
                # the row nearest the training side moves, so the fewest later runs see it change sides
                move(rows[np.argmax(scores[rows])], to_holdout=False)
                notes.append(f"class {label!r} had no training row: 1 of its {len(rows)} moved to training")
    if not (~in_holdout).any():
        move(int(np.argmax(scores)), to_holdout=False)
        notes.append(f"no row hashed into training ({len(frame)} rows): the one nearest the cut moved there")
    if not in_holdout.any():
        nearest = next((row for row in np.argsort(scores, kind="stable") if _can_hold_out(row, ids, target)), None)
        if nearest is None:
            raise FeatureError(
                f"cannot hold out any of {len(frame)} rows without leaving training empty or without a class "
                f"of {problem.target}: add rows or lower split.holdout_fraction"
            )
        move(nearest, to_holdout=True)
        notes.append(f"no row hashed into the holdout ({len(frame)} rows): the one nearest the cut moved there")
    return in_holdout, "; ".join(notes)


def _can_hold_out(row: int, ids: np.ndarray, target: np.ndarray | None) -> bool:
    """Whether training keeps a row, and every class a row, once every row sharing ``row``'s id leaves it."""
    staying = ids != ids[row]
    if not staying.any():
        return False
    return target is None or set(pd.unique(target)) <= set(pd.unique(target[staying]))


def feature_columns(frame: pd.DataFrame, spec: ProjectSpec) -> tuple[list[str], list[str]]:
    """The model inputs, as (numeric, categorical)."""
    excluded = set(spec.problem.excluded_columns)
    numeric, categorical = [], []
    for column in frame.columns:
        if column in excluded:
            continue
        series = frame[column]
        if types.is_bool_dtype(series) or not types.is_numeric_dtype(series):
            categorical.append(str(column))
        else:
            numeric.append(str(column))
    if not numeric and not categorical:
        raise FeatureError(f"no feature columns left besides {sorted(excluded)}: the model has nothing to learn from")
    return numeric, categorical


def fit_feature_pipeline(training: pd.DataFrame, spec: ProjectSpec) -> ColumnTransformer:
    """Median-impute and scale numbers; impute the most frequent value and one-hot encode categories."""
    numeric, categorical = feature_columns(training, spec)
    transformer = ColumnTransformer(
        [
            ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric),
            (
                "categorical",
                Pipeline(
                    [
                        ("to_text", _as_text()),
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        (
                            "encode",
                            OneHotEncoder(
                                handle_unknown="infrequent_if_exist",
                                max_categories=MAX_CATEGORIES,
                                min_frequency=MIN_CATEGORY_SHARE,
                                sparse_output=False,
                            ),
                        ),
                    ]
                ),
                categorical,
            ),
        ],
        verbose_feature_names_out=False,
    )
    try:
        transformer.fit(training[numeric + categorical])
    except ValueError as exc:
        raise FeatureError(f"cannot fit the feature pipeline on columns {numeric + categorical}: {exc}") from exc
    return transformer


def _as_text() -> FunctionTransformer:
    return FunctionTransformer(_to_object_text, feature_names_out="one-to-one")


def _to_object_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Categories as Python strings with NaN for missing: what SimpleImputer and OneHotEncoder accept,
    whatever dtype (bool, pandas string, category, mixed) the column arrived with."""
    return frame.astype("string").astype(object).where(frame.notna(), np.nan)


def input_schema(pipeline: ColumnTransformer, training: pd.DataFrame, spec: ProjectSpec, classes=()) -> dict:
    """What a prediction request must hold, from the columns the feature pipeline was fitted on: each
    column's kind, its type, and for categories the values training saw. Serving builds its request model
    from this, so a request is checked against exactly what the model learned from. ``id_column`` (the spec's,
    when it names one) is no model input: a request may carry it, so that labels can be joined to the logged
    prediction. (The registry keeps the schema in BentoML metadata, which takes no None.)"""
    columns = []
    for column in pipeline.feature_names_in_:
        series = training[column]
        entry: dict = {"name": str(column), "nullable": True}
        if types.is_bool_dtype(series):
            entry |= {"kind": "category", "type": "bool", "categories": sorted(map(str, series.dropna().unique()))}
        elif types.is_numeric_dtype(series):
            entry |= {"kind": "number", "type": "integer" if types.is_integer_dtype(series) else "float"}
        else:
            entry |= {"kind": "category", "type": "string", "categories": sorted(map(str, series.dropna().unique()))}
        columns.append(entry)
    return {
        "project": spec.name,
        "task": spec.problem.task,
        "target": spec.problem.target,
        "classes": [str(c) for c in classes],
        "columns": columns,
        **({"id_column": spec.problem.id_column} if spec.problem.id_column else {}),
    }
