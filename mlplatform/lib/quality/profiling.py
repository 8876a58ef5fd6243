"""The profile learned from the accepted data: what the next batch is expected to look like (its rules are
built by ``builders.profile_rules``)."""

from __future__ import annotations

import pandas as pd
from pandas.api import types

from mlplatform.lib.spec import ProjectSpec


def learn_profile(frame: pd.DataFrame, spec: ProjectSpec) -> dict:
    """What the accepted data looks like, as plain JSON: the expectations of the next batch come from it."""
    settings = spec.quality.profile
    columns: dict[str, dict] = {}
    for name in frame.columns:
        if name in spec.problem.drop_columns:
            continue
        series = frame[name]
        entry: dict = {"null_fraction": float(series.isna().mean())}
        present = series.dropna()
        if types.is_bool_dtype(series):
            entry["kind"] = "boolean"
        elif types.is_numeric_dtype(series):
            entry["kind"] = "numeric"
            if not present.empty:
                entry["min"], entry["max"] = float(present.min()), float(present.max())
        elif types.is_datetime64_any_dtype(series):
            entry["kind"] = "datetime"
        else:
            entry["kind"] = "category"
            values = present.astype(str).unique()
            if len(values) <= settings.max_categories:
                entry["values"] = sorted(values.tolist())
        columns[str(name)] = entry
    return {"rows": len(frame), "columns": columns}
