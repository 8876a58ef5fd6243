"""Row-index columns that tools write beside the data, found at ingestion and left out.

R's ``write.csv`` writes the row names as a first column with an empty header, and pandas' ``to_csv`` writes
the index the same way; read back, the column is ``Unnamed: 0`` (or ``X`` after R's ``read.csv``, ``...1``
after readr, ``index`` or ``level_0`` after pandas' ``reset_index``). It is no property of the row, only its
position in the file. When the file is sorted by the target, as R datasets often are, it predicts the target
almost perfectly and becomes the model's top feature: the holdout looks excellent and the model is useless on
new data. Left in, it also breaks the learned profile, since the next batch's positions run past its range.

- A column with no name (pandas' ``Unnamed: N``, an empty or blank header) holding unique integers is an index.
- A column with one of the names those tools give (``INDEX_NAMES``) is one only when its values are also
  consecutive integers (each once, with step 1, in any order), since a user may well name a column ``X``.
- A column the spec names (target, id or time column, drop_columns, quality contracts and expectations, slice
  columns) is never left out, and ``source.drop_index_columns: false`` keeps them all.
"""

from __future__ import annotations

import re
from collections.abc import Collection

import pandas as pd
from pandas.api import types

from mlplatform.lib.spec import ProjectSpec

INDEX_NAMES = frozenset({"index", "level_0", "X", "...1", "Unnamed: 0"})
# The frame's attrs key listing what was left out: ingestion has no other way to tell raw_batch, and a
# multi-file snapshot concatenates frames after each file lost its own index.
DROPPED = "index_columns_dropped"
_UNNAMED = re.compile(r"Unnamed: \d+|\s*")


def drop_index_columns(frame: pd.DataFrame, spec: ProjectSpec) -> pd.DataFrame:
    """The frame without its index columns; their names are in ``frame.attrs[DROPPED]`` (empty if none)."""
    found = index_columns(frame, spec_columns(spec)) if spec.source.drop_index_columns else []
    if found:
        frame = frame.drop(columns=found)
    frame.attrs[DROPPED] = found
    return frame


def index_columns(frame: pd.DataFrame, protected: Collection[str] = ()) -> list[str]:
    """The columns of ``frame`` that hold a row index rather than data, in the frame's order."""
    return [
        str(column)
        for column in frame.columns
        if str(column) not in protected and _is_index(frame[column], unnamed=bool(_UNNAMED.fullmatch(str(column))))
    ]


def _is_index(series: pd.Series, unnamed: bool) -> bool:
    if types.is_bool_dtype(series) or not types.is_integer_dtype(series) or series.hasnans:
        return False
    if not unnamed and str(series.name) not in INDEX_NAMES:
        return False
    if not series.is_unique:
        return False
    return bool(unnamed or series.max() - series.min() == len(series) - 1)


def spec_columns(spec: ProjectSpec) -> set[str]:
    """Every column the spec names, whatever for."""
    problem = spec.problem
    named = {problem.target, problem.id_column, problem.time_column, *problem.drop_columns}
    named |= set(spec.quality.columns) | set(spec.evaluation.slice_columns)
    for expectation in spec.quality.expectations:
        for key, value in expectation.kwargs.items():
            if key.startswith("column"):  # column, column_A, column_list, ...
                if isinstance(value, str):
                    named.add(value)
                elif isinstance(value, (list, tuple)):
                    named |= set(map(str, value))
    return {str(name) for name in named if name is not None}
