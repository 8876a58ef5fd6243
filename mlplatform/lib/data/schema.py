"""The kind of each column (numeric, boolean, text, datetime), as far as joining batches is concerned.

Batches are appended with ``pandas.concat`` and stored as Parquet: a column that is numbers in one batch and
text in the next becomes a column of mixed objects that Parquet cannot store, and every later run would fail
reading the training data. The kinds here are what must agree; a column with no values has no kind yet and
joins anything.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pandas.api import types

NUMERIC, BOOLEAN, TEXT, DATETIME, EMPTY = "numeric", "boolean", "text", "datetime", "empty"

_INFERRED = {
    "string": TEXT,
    "boolean": BOOLEAN,
    "integer": NUMERIC,
    "floating": NUMERIC,
    "mixed-integer-float": NUMERIC,
    "decimal": NUMERIC,
    "datetime": DATETIME,
    "datetime64": DATETIME,
    "date": DATETIME,
    "empty": EMPTY,
}


def kind_of_series(series: pd.Series) -> str:
    """The kind of a pandas column; "mixed: ..." for an object column of several kinds (no Parquet type)."""
    if series.isna().all():
        return EMPTY
    dtype = series.dtype
    if types.is_bool_dtype(dtype):
        return BOOLEAN
    if types.is_numeric_dtype(dtype):
        return NUMERIC
    if types.is_datetime64_any_dtype(dtype):
        return DATETIME
    if types.is_string_dtype(dtype) and not types.is_object_dtype(dtype):
        return TEXT
    inferred = types.infer_dtype(series, skipna=True)
    return _INFERRED.get(inferred, f"mixed: {inferred}")


def kind_of_arrow(data_type: pa.DataType) -> str:
    if pa.types.is_null(data_type):
        return EMPTY
    if pa.types.is_boolean(data_type):
        return BOOLEAN
    if pa.types.is_integer(data_type) or pa.types.is_floating(data_type) or pa.types.is_decimal(data_type):
        return NUMERIC
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type) or pa.types.is_string_view(data_type):
        return TEXT
    if pa.types.is_timestamp(data_type) or pa.types.is_date(data_type):
        return DATETIME
    return str(data_type)


def kinds_of_parquet(metadata: pq.FileMetaData) -> dict[str, tuple[str, str]]:
    """Column -> (kind, Parquet type) from a Parquet file's footer alone, without reading its rows. A column
    whose statistics say every value is missing is empty, whatever type it was written with."""
    schema = metadata.schema.to_arrow_schema()
    kinds = {}
    for index, field in enumerate(schema):
        kind = kind_of_arrow(field.type)
        if kind != EMPTY and _all_missing(metadata, index):
            kind = EMPTY
        kinds[field.name] = (kind, str(field.type))
    return kinds


def _all_missing(metadata: pq.FileMetaData, index: int) -> bool:
    if metadata.num_rows == 0:
        return True
    nulls = 0
    for group in range(metadata.num_row_groups):
        statistics = metadata.row_group(group).column(index).statistics
        if statistics is None or not statistics.has_null_count:
            return False
        nulls += statistics.null_count
    return nulls == metadata.num_rows


def conflicts(accepted: dict[str, tuple[str, str]], arriving: pd.DataFrame) -> list[str]:
    """Why ``arriving`` cannot be appended to data of the ``accepted`` kinds: one line per column."""
    problems = []
    for name in arriving.columns:
        kind = kind_of_series(arriving[name])
        if kind.startswith("mixed"):
            problems.append(f"column {str(name)!r} mixes kinds of values ({kind}, dtype {arriving[name].dtype})")
            continue
        if str(name) not in accepted:
            continue
        accepted_kind, accepted_type = accepted[str(name)]
        if EMPTY not in (kind, accepted_kind) and kind != accepted_kind:
            problems.append(
                f"column {str(name)!r} is {accepted_kind} ({accepted_type}) in the accepted data but "
                f"{kind} (dtype {arriving[name].dtype}) in this batch"
            )
    return problems
