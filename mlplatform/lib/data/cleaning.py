"""Cleaning a raw batch: types coerced, duplicates dropped, missing values made explicit.

Imputation is not done here: it is learned from the training split only, in the feature pipeline, so that
the holdout never leaks into it. Every change is counted in the returned report.
"""

from __future__ import annotations

import pandas as pd
from pandas.api import types

from mlplatform.lib.spec import ProjectSpec

MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "-"})
# A text column becomes numeric when at least this share of its non-missing values parse as numbers.
NUMERIC_SHARE = 0.95


class CleaningError(ValueError):
    """The batch cannot be cleaned into anything trainable; the message names the column."""


def clean(raw: pd.DataFrame, spec: ProjectSpec) -> tuple[pd.DataFrame, dict]:
    """Return the cleaned frame and a report of every change made."""
    problem = spec.problem
    named = {"problem.target": [problem.target], "problem.drop_columns": list(problem.drop_columns)}
    named.update(
        {f"problem.{role}": [getattr(problem, role)] for role in ("id_column", "time_column") if getattr(problem, role)}
    )
    for field, columns in named.items():
        missing = [column for column in columns if column not in raw.columns]
        if missing:
            raise CleaningError(f"{field}: column {', '.join(map(repr, missing))} is not in the data")
    frame = raw.drop(columns=list(problem.drop_columns))
    report: dict = {"rows_in": len(raw), "columns_dropped_by_spec": list(problem.drop_columns)}

    frame, report["missing_tokens_replaced"] = _normalise_missing(frame)
    frame, report["columns_coerced"] = _coerce_types(frame, spec)

    # Unlabeled rows are normal in survey or label data; how many a batch may have is the quality contract's
    # call (quality.max_unlabeled_fraction). Here they are dropped and counted.
    target_missing = frame[problem.target].isna()
    report["rows_without_target_dropped"] = int(target_missing.sum())
    report["unlabeled_fraction"] = round(float(target_missing.mean()), 4) if len(frame) else 0.0
    frame = frame.loc[~target_missing]

    subset = [problem.id_column] if problem.id_column else None
    duplicated = frame.duplicated(subset=subset, keep="last")
    report["duplicate_rows_dropped"] = int(duplicated.sum())
    frame = frame.loc[~duplicated]

    empty = [c for c in frame.columns if c not in problem.excluded_columns and frame[c].isna().all()]
    report["empty_columns_dropped"] = empty
    frame = frame.drop(columns=empty).reset_index(drop=True)

    if frame.empty:
        raise CleaningError(
            f"no rows left after cleaning (of {len(raw)}: {report['rows_without_target_dropped']} had no "
            f"target {problem.target!r}, {report['duplicate_rows_dropped']} were duplicates)"
        )
    if problem.positive_class is not None:
        _check_positive_class(frame[problem.target], problem.positive_class, problem.target)
    missing = frame.isna().sum()
    report["missing_values"] = {str(c): int(n) for c, n in missing.items() if n}
    report["rows_out"] = len(frame)
    return frame, report


def _normalise_missing(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    replaced = {}
    frame = frame.copy()
    for column in frame.columns:
        series = frame[column]
        if not (types.is_object_dtype(series) or types.is_string_dtype(series)):
            continue
        # Object columns can mix text with numbers or booleans (JSON gives such columns): only text is touched.
        is_text = series.map(lambda value: isinstance(value, str)).astype(bool)
        stripped = series.where(~is_text, series[is_text].str.strip() if is_text.any() else series)
        is_token = is_text & stripped.where(is_text, "").str.lower().isin(MISSING_TOKENS)
        count = int(is_token.sum())
        if count:
            replaced[str(column)] = count
        frame[column] = stripped.mask(is_token)
    return frame, replaced


def _coerce_types(frame: pd.DataFrame, spec: ProjectSpec) -> tuple[pd.DataFrame, dict[str, str]]:
    problem = spec.problem
    coerced = {}
    for column in frame.columns:
        series = frame[column]
        if column == problem.time_column:
            if not types.is_datetime64_any_dtype(series):
                frame[column] = _to_datetime(series, column)
                coerced[str(column)] = "datetime"
            continue
        if column == problem.target:
            frame[column], change = coerce_target(series, problem.task, column)
            if change:
                coerced[str(column)] = change
            continue
        if types.is_numeric_dtype(series) or types.is_bool_dtype(series) or types.is_datetime64_any_dtype(series):
            continue
        present = series.dropna()
        if present.empty:
            continue
        numbers = pd.to_numeric(present, errors="coerce")
        share = numbers.notna().mean()
        if share >= NUMERIC_SHARE:
            frame[column] = pd.to_numeric(series, errors="coerce")
            lost = int(numbers.isna().sum())
            coerced[str(column)] = "numeric" + (f" ({lost} unparseable values set missing)" if lost else "")
    return frame, coerced


def coerce_target(series: pd.Series, task: str, column: str) -> tuple[pd.Series, str | None]:
    """A target as training compares it: numbers for regression (a few unparseable values made missing), text
    labels for classification (whole floats, from a column with gaps, as integers); and what changed. Labels
    for served predictions (``mlplatform.lib.monitoring.labels``) are read the same way."""
    if task == "regression":
        if types.is_numeric_dtype(series) and not types.is_bool_dtype(series):
            return series.astype("float64"), None
        numbers = pd.to_numeric(series, errors="coerce")
        bad = series.notna() & numbers.isna()
        if bad.mean() > 1 - NUMERIC_SHARE:
            sample = ", ".join(map(repr, series[bad].unique()[:5]))
            raise CleaningError(
                f"target {column!r}: a regression target must be numeric; {int(bad.sum())} values are not "
                f"(for example {sample})"
            )
        return numbers.astype("float64"), f"numeric ({int(bad.sum())} unparseable targets set missing)"
    if types.is_float_dtype(series):
        whole = series.dropna()
        if (whole == whole.round()).all():
            return series.astype("Int64").astype("string").astype(object).where(series.notna()), "class labels"
    if types.is_object_dtype(series) or types.is_string_dtype(series):
        return series, None
    return series.astype("string").astype(object).where(series.notna()), "class labels"


def _to_datetime(series: pd.Series, column: str) -> pd.Series:
    parsed = pd.to_datetime(series, errors="coerce", utc=True)
    # pandas infers one format from the first value; dates of mixed precision need the general parsers.
    for general in ("ISO8601", "mixed"):
        if not (series.notna() & parsed.isna()).any():
            break
        parsed = pd.to_datetime(series, errors="coerce", utc=True, format=general)
    bad = series.notna() & parsed.isna()
    if bad.any():
        sample = ", ".join(map(repr, series[bad].unique()[:5]))
        raise CleaningError(f"time_column {column!r}: {int(bad.sum())} values are not dates (for example {sample})")
    return parsed


def _check_positive_class(labels: pd.Series, positive: str, column: str) -> None:
    seen = sorted(labels.astype(str).unique())
    if len(seen) != 2:
        raise CleaningError(
            f"problem.positive_class {positive!r}: target {column!r} has {len(seen)} classes ({seen[:10]}); a positive "
            "class is for a two-class target"
        )
    if positive not in seen:
        hint = ""
        if positive in ("True", "False"):
            hint = " (YAML reads unquoted yes/no/on/off as true/false: quote the label, e.g. positive_class: 'yes')"
        raise CleaningError(f"problem.positive_class {positive!r} is not a label of target {column!r}: {seen}{hint}")
