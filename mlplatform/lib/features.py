"""The train/holdout split and the feature pipeline, fitted on the training split only.

Serving imports this module too: the model that is shipped is ``Pipeline([features, estimator])``, so a
prediction goes through exactly the transformation training used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api import types
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
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


def split(frame: pd.DataFrame, spec: ProjectSpec) -> tuple[pd.DataFrame, pd.DataFrame, SplitSummary]:
    """A deterministic split: time-ordered when the spec names a time column, else seeded and, for
    classification, stratified by the target."""
    problem, settings = spec.problem, spec.split
    if len(frame) < 2:
        raise FeatureError(f"cannot split {len(frame)} row(s) into training and holdout sets")
    if problem.time_column:
        ordered = frame.sort_values(problem.time_column, kind="stable")
        cut = len(ordered) - max(1, round(len(ordered) * settings.holdout_fraction))
        train, holdout = ordered.iloc[:cut], ordered.iloc[cut:]
        strategy = f"time-ordered by {problem.time_column}: holdout is the latest {len(holdout)} rows"
    else:
        stratify = None
        strategy = f"random, seed {settings.seed}"
        if problem.task == "classification":
            counts = frame[problem.target].value_counts()
            holdout_rows = round(len(frame) * settings.holdout_fraction)
            if counts.min() >= 2 and holdout_rows >= len(counts):
                stratify = frame[problem.target]
                strategy += f", stratified by {problem.target}"
            else:
                strategy += f", not stratified (class {counts.idxmin()!r} has {counts.min()} row(s))"
        train, holdout = train_test_split(
            frame, test_size=settings.holdout_fraction, random_state=settings.seed, stratify=stratify
        )
    if train.empty or holdout.empty:
        raise FeatureError(
            f"split.holdout_fraction {settings.holdout_fraction} leaves an empty side of {len(frame)} rows"
        )
    summary = SplitSummary(strategy=strategy, training_rows=len(train), holdout_rows=len(holdout))
    return train.reset_index(drop=True), holdout.reset_index(drop=True), summary


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
    from this, so a request is checked against exactly what the model learned from."""
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
    }
