"""Row-index columns written by R and pandas, found at ingestion and left out unless the spec names them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlplatform.lib.data.index_columns import DROPPED, index_columns, spec_columns
from mlplatform.lib.data.ingest import read_source

REGRESSION = {"task": "regression", "target": "price"}


def r_write_csv(frame: pd.DataFrame, path: Path) -> None:
    """What R's write.csv writes: a quoted header, an empty first one, and row names "1".."n" quoted."""
    lines = [",".join(['""', *(f'"{c}"' for c in frame.columns)])]
    for number, row in enumerate(frame.itertuples(index=False), start=1):
        lines.append(",".join([f'"{number}"', *(f'"{v}"' if isinstance(v, str) else repr(v) for v in row)]))
    path.write_text("\n".join(lines) + "\n")


def diamonds_like(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    """A regression set sorted by its target, as R datasets often are."""
    rng = np.random.default_rng(seed)
    carat = rng.lognormal(-0.5, 0.5, rows).round(2)
    frame = pd.DataFrame(
        {
            "carat": carat,
            "cut": rng.choice(["Fair", "Good", "Ideal"], rows),
            "price": np.exp(8 + 1.7 * np.log(carat) + rng.normal(0, 0.3, rows)).round(),
        }
    )
    return frame.sort_values("price", ignore_index=True)


@pytest.mark.parametrize(
    ("column", "values", "is_index"),
    [
        ("Unnamed: 0", [1, 2, 3, 4], True),
        ("Unnamed: 0", [0, 1, 2, 3], True),
        ("Unnamed: 3", [17, 4, 99, 23], True),  # R row names after subsetting: unique, not consecutive
        ("", [5, 6, 7, 8], True),
        ("Unnamed: 0", [1.5, 2.5, 3.5, 4.5], False),  # not integers
        ("Unnamed: 0", [1, 1, 2, 3], False),  # duplicated
        ("Unnamed: 0", ["1", "2", "3", "4"], False),  # text
        ("Unnamed: 0", [True, False, True, False], False),
        ("X", [1, 2, 3, 4], True),
        ("X", [4, 2, 1, 3], True),  # shuffled after the index was written: still each position once
        ("X", [1, 3, 4, 10], False),  # a user's column named X
        ("index", [0, 1, 2, 3], True),
        ("index", [0, 0, 1, 2], False),
        ("level_0", [10, 11, 12, 13], True),
        ("...1", [1, 2, 3, 4], True),
        ("row", [1, 2, 3, 4], False),  # a name no tool writes
        ("id", [1, 2, 3, 4], False),
    ],
)
def test_which_columns_are_row_indexes(column: str, values: list, is_index: bool) -> None:
    frame = pd.DataFrame({column: values, "price": [10.0, 20.0, 30.0, 40.0]})

    assert index_columns(frame) == ([column] if is_index else [])


def test_a_nullable_integer_column_with_a_gap_is_no_index() -> None:
    frame = pd.DataFrame({"Unnamed: 0": pd.array([1, None, 3], dtype="Int64")})

    assert index_columns(frame) == []


def test_a_column_the_spec_names_is_never_an_index(spec_from) -> None:
    spec = spec_from(
        problem={"task": "regression", "target": "price", "id_column": "index", "drop_columns": ["Unnamed: 0"]},
        quality={
            "columns": {"X": {"type": "number"}},
            "expectations": [{"expectation": "expect_column_pair_values_a_to_be_greater_than_b",
                              "kwargs": {"column_A": "level_0", "column_B": "price"}}],
        },
        evaluation={"slice_columns": ["...1"]},
    )  # fmt: skip
    frame = pd.DataFrame({name: [1, 2, 3] for name in ["index", "Unnamed: 0", "X", "level_0", "...1", "Unnamed: 5"]})

    assert spec_columns(spec) >= {"price", "index", "Unnamed: 0", "X", "level_0", "...1"}
    assert index_columns(frame, spec_columns(spec)) == ["Unnamed: 5"]


def test_an_r_write_csv_file_loses_its_row_names(tmp_path: Path, spec_from) -> None:
    data = diamonds_like()
    r_write_csv(data, tmp_path / "diamonds.csv")

    frame = read_source(spec_from(problem=REGRESSION, source={"uri": str(tmp_path / "diamonds.csv")}))

    assert list(frame.columns) == ["carat", "cut", "price"]
    assert frame.attrs[DROPPED] == ["Unnamed: 0"]
    pd.testing.assert_frame_equal(frame, data, check_dtype=False)


def test_the_opt_out_keeps_the_index(tmp_path: Path, spec_from) -> None:
    diamonds_like().to_csv(tmp_path / "diamonds.csv")
    spec = spec_from(problem=REGRESSION, source={"uri": str(tmp_path / "diamonds.csv"), "drop_index_columns": False})

    frame = read_source(spec)

    assert list(frame.columns) == ["Unnamed: 0", "carat", "cut", "price"]
    assert frame.attrs[DROPPED] == []


def test_each_file_of_a_snapshot_folder_loses_its_own_index(tmp_path: Path, spec_from) -> None:
    """Each pandas chunk's index starts at 0 again: together the column is not unique, yet in each file it is."""
    folder = tmp_path / "parts"
    folder.mkdir()
    data = diamonds_like()
    data.iloc[:120].to_csv(folder / "a.csv")
    data.iloc[120:].reset_index(drop=True).to_csv(folder / "b.csv")
    spec = spec_from(problem=REGRESSION, source={"uri": str(folder), "mode": "snapshot"})

    frame = read_source(spec)

    assert list(frame.columns) == ["carat", "cut", "price"] and len(frame) == len(data)
    assert frame.attrs[DROPPED] == ["Unnamed: 0"]


def test_a_sql_table_written_by_pandas_loses_its_index_column(tmp_path: Path, spec_from) -> None:
    import sqlite3

    database = tmp_path / "shop.db"
    with sqlite3.connect(database) as connection:
        diamonds_like().to_sql("diamonds", connection)  # pandas writes the index as a column named "index"
    spec = spec_from(problem=REGRESSION, source={"uri": f"sqlite:///{database}", "query": "SELECT * FROM diamonds"})

    frame = read_source(spec)

    assert list(frame.columns) == ["carat", "cut", "price"]
    assert frame.attrs[DROPPED] == ["index"]
