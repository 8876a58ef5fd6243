"""mlplatform.lib.monitoring.labels: label files read with the ingestion readers; bad files named, not fatal."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlplatform.lib.monitoring.labels import REQUEST_ID, join_column, read_labels
from mlplatform.lib.spec import SpecError


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "labels"
    path.mkdir()
    return path


def spec_with(spec_from, folder: Path, problem: dict | None = None, **labels):
    return spec_from(
        problem=problem or {"task": "classification", "target": "species"},
        monitoring={"labels": {"uri": str(folder), **labels}},
    )


def test_csv_parquet_and_json_files_are_read_in_name_order(spec_from, folder: Path) -> None:
    pd.DataFrame({"request_id": ["a-1", "a-2"], "species": ["Adelie", "Gentoo"]}).to_csv(folder / "1.csv", index=False)
    pd.DataFrame({"request_id": ["a-3"], "request_row": [2], "species": ["Chinstrap"]}).to_parquet(folder / "2.parquet")
    (folder / "3.json").write_text('[{"request_id": "a-4", "species": "Adelie", "note": "extra columns are ignored"}]')
    (folder / ".4.csv.partial").write_text("request_id,species\na-5,Adelie\n")  # still being written

    labels = read_labels(spec_with(spec_from, folder))

    assert (labels.by, labels.files, labels.problems) == (REQUEST_ID, 3, ())
    assert labels.frame["key"].tolist() == ["a-1", "a-2", "a-3", "a-4"]
    assert labels.frame["truth"].tolist() == ["Adelie", "Gentoo", "Chinstrap", "Adelie"]
    assert labels.frame["request_row"].tolist() == [pd.NA, pd.NA, 2, pd.NA]
    assert labels.frame["file"].str.rsplit("/", n=1).str[-1].tolist() == ["1.csv", "1.csv", "2.parquet", "3.json"]


def test_ids_read_as_numbers_become_the_text_the_log_holds(spec_from, folder: Path) -> None:
    problem = {"task": "classification", "target": "species", "id_column": "ring"}
    (folder / "labels.csv").write_text("ring,species\n1042,Adelie\n,\n77,1\n")  # a gap makes pandas read floats

    labels = read_labels(spec_with(spec_from, folder, problem))

    assert labels.by == "ring"
    assert labels.problems and "1 row(s) name no prediction" in labels.problems[0]
    (folder / "labels.csv").write_text("ring,species\n1042,Adelie\n77,\n78.0,1\n")
    labels = read_labels(spec_with(spec_from, folder, problem))
    assert labels.frame[["key", "truth"]].values.tolist() == [["1042", "Adelie"], ["78", "1"]]
    assert labels.without_truth == 1 and labels.problems == ()


def test_request_ids_that_look_like_numbers_are_read_as_written(spec_from, folder: Path) -> None:
    """A server's request-id prefix is 12 random hex digits: about 1 in 3,000 is 11 digits and an "e", so its ids
    ("17851957467e-1") are numbers in scientific notation to a CSV reader, and joined nothing when read as such."""
    ids = ["17851957467e-1", "17851957467e-2", "17851957467e-3"]  # one server's ids: the same prefix
    pd.DataFrame({"request_id": ids, "species": ["Adelie", "Gentoo", "Adelie"]}).to_csv(folder / "1.csv", index=False)

    labels = read_labels(spec_with(spec_from, folder))

    assert labels.frame["key"].tolist() == ids and labels.problems == ()


@pytest.mark.parametrize(
    ("content", "name", "expected"),
    [
        ("request_id,kind\na-1,Adelie\n", "no-target.csv", "no-target.csv: no column 'species'"),
        ("id,species\na-1,Adelie\n", "no-id.csv", "no-id.csv: no column 'request_id'"),
        ("request_id,species\n,Adelie\n", "empty-id.csv", "column 'request_id': 1 row(s) name no prediction"),
        ("request_id,request_row,species\na-1,first,Adelie\n", "rows.csv", "column 'request_row' must hold"),
        ("request_id,request_row,species\na-1,-1,Adelie\n", "negative.csv", "1 value(s) do not (-1)"),
        ("\x00\x01garbage", "garbage.csv", "garbage.csv: holds NUL bytes"),
        ("PAR1 not really", "broken.parquet", "cannot parse"),
    ],
)
def test_a_bad_file_is_named_with_its_column_and_the_rest_still_count(
    spec_from, folder: Path, content: str, name: str, expected: str
) -> None:
    (folder / "0-good.csv").write_text("request_id,species\na-9,Gentoo\n")
    (folder / name).write_text(content)

    labels = read_labels(spec_with(spec_from, folder))

    (problem,) = labels.problems
    assert expected in problem and name in problem
    assert labels.frame["key"].tolist() == ["a-9"] and labels.files == 2


def test_a_regression_target_that_is_not_numbers_is_named(spec_from, folder: Path) -> None:
    problem = {"task": "regression", "target": "body_mass_g"}
    rows = "".join(f"a-{i},{4000 + i}\n" for i in range(30))
    (folder / "mostly.csv").write_text("request_id,body_mass_g\n" + rows + "a-99,heavy\n")
    (folder / "words.csv").write_text("request_id,body_mass_g\na-1,heavy\na-2,light\n")

    labels = read_labels(spec_with(spec_from, folder, problem))

    mostly, words = labels.problems
    assert "mostly.csv: column 'body_mass_g': 1 value(s) are not numbers, left out ('heavy')" in mostly
    assert "words.csv" in words and "must be numeric" in words
    assert len(labels.frame) == 30 and labels.frame["truth"].dtype == float


def test_no_folder_yet_is_no_labels(spec_from, tmp_path: Path) -> None:
    labels = read_labels(spec_with(spec_from, tmp_path / "not-yet"))

    assert (labels.files, labels.problems, len(labels.frame)) == (0, (), 0)


def test_the_join_column_defaults_to_the_id_column_then_the_request_id(spec_from, folder: Path) -> None:
    with_id = {"task": "classification", "target": "species", "id_column": "ring"}

    assert join_column(spec_with(spec_from, folder)) == "request_id"
    assert join_column(spec_with(spec_from, folder, with_id)) == "ring"
    assert join_column(spec_with(spec_from, folder, with_id, id_column="request_id")) == "request_id"


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"uri": "labels/", "id_column": "penguin"}, "monitoring.labels.id_column 'penguin'"),
        ({"uri": "https://example.com/labels.csv"}, "labels land in a folder or an S3 prefix"),
    ],
)
def test_a_labels_section_that_cannot_work_is_refused_with_the_spec(spec_from, labels: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec_from(monitoring={"labels": labels})
