"""Cleaning: missing tokens, type coercion, target handling, duplicates, and a report that counts every change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlplatform.lib.data.cleaning import CleaningError, clean

CLASSIFY = {"task": "classification", "target": "label"}
REGRESS = {"task": "regression", "target": "price"}


@pytest.fixture
def cleaned(spec_from):
    """clean(frame) under a spec with the given problem section."""

    def run(frame: pd.DataFrame, **problem: object) -> tuple[pd.DataFrame, dict]:
        return clean(frame, spec_from(problem={**CLASSIFY, **problem}))

    return run


def test_the_bundled_example(spec_from, penguins: pd.DataFrame) -> None:
    frame, report = clean(penguins, spec_from())

    assert "year" not in frame.columns
    assert report["rows_in"] == 344
    assert report["rows_out"] == len(frame) == 344  # no duplicates and every penguin has a species
    assert report["missing_values"] == {
        "bill_length_mm": 2,
        "bill_depth_mm": 2,
        "flipper_length_mm": 2,
        "body_mass_g": 2,
        "sex": 11,
    }
    assert set(frame["species"]) == {"Adelie", "Gentoo", "Chinstrap"}


@pytest.mark.parametrize("token", ["NA", "n/a", "?", "-", "null", "None", "", "  ", " NaN "])
def test_missing_tokens_become_missing_values(cleaned, token: str) -> None:
    frame, report = cleaned(pd.DataFrame({"label": ["a", "b", "a"], "colour": ["red", token, "blue"]}))

    assert frame["colour"].isna().tolist() == [False, True, False]
    assert report["missing_tokens_replaced"] == {"colour": 1}
    assert report["missing_values"] == {"colour": 1}


def test_text_is_stripped_but_otherwise_kept(cleaned) -> None:
    frame, report = cleaned(pd.DataFrame({"label": ["a", "b"], "colour": ["  red ", "Nan-tucket"]}))

    assert frame["colour"].tolist() == ["red", "Nan-tucket"]
    assert report["missing_tokens_replaced"] == {}


def test_numbers_written_as_text_become_numbers(cleaned) -> None:
    raw = pd.DataFrame({"label": list("abcd"), "mass": ["3750", " 3800.5", "?", "4e3"], "code": ["1", "2", "x", "y"]})

    frame, report = cleaned(raw)

    assert pd.api.types.is_float_dtype(frame["mass"])
    assert frame["mass"].tolist()[:2] == [3750.0, 3800.5]
    assert np.isnan(frame["mass"].iloc[2])
    assert frame["mass"].iloc[3] == 4000.0
    assert report["columns_coerced"] == {"mass": "numeric"}
    assert frame["code"].tolist() == ["1", "2", "x", "y"]  # half text: stays a category


def test_a_few_unparseable_numbers_are_counted_when_set_missing(cleaned) -> None:
    values = [str(i) for i in range(99)] + ["twelve"]
    raw = pd.DataFrame({"label": ["a", "b"] * 50, "mass": values})

    frame, report = cleaned(raw)

    assert report["columns_coerced"] == {"mass": "numeric (1 unparseable values set missing)"}
    assert frame["mass"].isna().sum() == 1


def test_rows_without_a_target_are_dropped(cleaned) -> None:
    raw = pd.DataFrame({"label": ["a", "NA", None, "b", "?"], "x": [1, 2, 3, 4, 5]})

    frame, report = cleaned(raw)

    assert frame["x"].tolist() == [1, 4]
    assert report["rows_without_target_dropped"] == 3
    assert report["unlabeled_fraction"] == 0.6
    assert report["rows_out"] == 2


@pytest.mark.parametrize(
    "target",
    [[None, None, None], ["NA", "?", ""], [np.nan, np.nan, np.nan]],
    ids=["None", "tokens", "NaN"],
)
def test_an_all_missing_target_fails_naming_it(cleaned, target: list) -> None:
    raw = pd.DataFrame({"label": target, "x": [1, 2, 3]})

    with pytest.raises(CleaningError) as raised:
        cleaned(raw)

    assert str(raised.value) == "no rows left after cleaning (of 3: 3 had no target 'label', 0 were duplicates)"


def test_an_empty_frame_fails(cleaned) -> None:
    raw = pd.DataFrame({"label": pd.Series([], dtype=object), "x": pd.Series([], dtype=float)})

    with pytest.raises(CleaningError, match=r"no rows left after cleaning \(of 0:"):
        cleaned(raw)


def test_exact_duplicates_are_dropped(cleaned) -> None:
    raw = pd.DataFrame({"label": ["a", "a", "b", "a"], "x": [1, 1, 2, 1], "y": [5, 5, 5, 6]})

    frame, report = cleaned(raw)

    assert frame[["x", "y"]].values.tolist() == [[1, 5], [2, 5], [1, 6]]
    assert report["duplicate_rows_dropped"] == 1


def test_duplicates_by_id_keep_the_last_row(cleaned) -> None:
    raw = pd.DataFrame({"penguin": [7, 8, 7], "label": ["a", "b", "c"], "x": [1, 2, 3]})

    frame, report = cleaned(raw, id_column="penguin")

    assert frame.to_dict("list") == {"penguin": [8, 7], "label": ["b", "c"], "x": [2, 3]}
    assert report["duplicate_rows_dropped"] == 1


def test_columns_the_spec_drops_and_empty_columns_go(cleaned) -> None:
    raw = pd.DataFrame({"label": ["a", "b"], "year": [2007, 2008], "notes": ["NA", None], "x": [1.0, 2.0]})

    frame, report = cleaned(raw, drop_columns=["year"])

    assert list(frame.columns) == ["label", "x"]
    assert report["columns_dropped_by_spec"] == ["year"]
    assert report["empty_columns_dropped"] == ["notes"]


def test_an_empty_id_column_is_kept(cleaned) -> None:
    """Roles the spec names are never dropped for being empty: the error belongs where they are used."""
    raw = pd.DataFrame({"penguin": [None, None], "label": ["a", "b"], "x": [1, 2]})

    frame, _ = cleaned(raw, id_column="penguin")

    assert "penguin" in frame.columns


@pytest.mark.parametrize(
    ("labels", "expected", "change"),
    [
        ([1, 0, 1], ["1", "0", "1"], "class labels"),
        ([1.0, 0.0, 1.0], ["1", "0", "1"], "class labels"),
        ([True, False, True], ["True", "False", "True"], "class labels"),
        (["yes", "no", "yes"], ["yes", "no", "yes"], None),
    ],
    ids=["int", "whole floats", "bool", "text"],
)
def test_classification_labels_become_text(cleaned, labels: list, expected: list, change: str | None) -> None:
    frame, report = cleaned(pd.DataFrame({"label": labels, "x": [1, 2, 3]}))

    assert frame["label"].tolist() == expected
    assert report["columns_coerced"].get("label") == change


def test_float_labels_with_a_missing_value(cleaned) -> None:
    frame, report = cleaned(pd.DataFrame({"label": [1.0, np.nan, 0.0], "x": [1, 2, 3]}))

    assert frame["label"].tolist() == ["1", "0"]
    assert report["rows_without_target_dropped"] == 1


class TestRegressionTarget:
    def test_numbers_as_text_are_coerced(self, spec_from) -> None:
        raw = pd.DataFrame({"price": ["1.5", "2", " 3 ", "NA"], "x": [1, 2, 3, 4]})

        frame, report = clean(raw, spec_from(problem=REGRESS))

        assert frame["price"].tolist() == [1.5, 2.0, 3.0]
        assert frame["price"].dtype == "float64"
        assert report["rows_without_target_dropped"] == 1

    def test_integers_become_floats(self, spec_from) -> None:
        frame, report = clean(pd.DataFrame({"price": [1, 2, 3], "x": [1, 2, 3]}), spec_from(problem=REGRESS))

        assert frame["price"].dtype == "float64"
        assert "price" not in report["columns_coerced"]

    def test_text_fails_naming_the_target_and_examples(self, spec_from) -> None:
        raw = pd.DataFrame({"price": ["cheap", "1.5", "dear", "2"], "x": [1, 2, 3, 4]})

        with pytest.raises(CleaningError) as raised:
            clean(raw, spec_from(problem=REGRESS))

        assert str(raised.value) == (
            "target 'price': a regression target must be numeric; 2 values are not (for example 'cheap', 'dear')"
        )

    def test_booleans_are_not_numbers(self, spec_from) -> None:
        frame, _ = clean(pd.DataFrame({"price": [True, False], "x": [1, 2]}), spec_from(problem=REGRESS))

        assert frame["price"].tolist() == [1.0, 0.0]


class TestTimeColumn:
    def test_text_dates_are_parsed_in_utc(self, cleaned) -> None:
        raw = pd.DataFrame({"label": ["a", "b"], "seen": ["2024-01-31 08:00+01:00", "2024-02-01 10:00+00:00"]})

        frame, report = cleaned(raw, time_column="seen")

        assert frame["seen"].tolist() == [pd.Timestamp("2024-01-31 07:00Z"), pd.Timestamp("2024-02-01 10:00Z")]
        assert report["columns_coerced"] == {"seen": "datetime"}

    def test_dates_of_mixed_precision(self, cleaned) -> None:
        raw = pd.DataFrame({"label": ["a", "b"], "seen": ["2024-01-31", "2024-02-01T10:00:00+01:00"], "x": [1, 2]})

        frame, _ = cleaned(raw, time_column="seen")

        assert frame["seen"].tolist() == [pd.Timestamp("2024-01-31", tz="UTC"), pd.Timestamp("2024-02-01 09:00Z")]

    def test_values_that_are_not_dates_fail_naming_the_column(self, cleaned) -> None:
        raw = pd.DataFrame({"label": ["a", "b", "c"], "seen": ["2024-01-31", "soon", "later"], "x": [1, 2, 3]})

        with pytest.raises(CleaningError) as raised:
            cleaned(raw, time_column="seen")

        assert str(raised.value) == "time_column 'seen': 2 values are not dates (for example 'soon', 'later')"

    def test_datetimes_are_left_alone(self, cleaned) -> None:
        raw = pd.DataFrame({"label": ["a", "b"], "seen": pd.to_datetime(["2024-01-31", "2024-02-01"]), "x": [1, 2]})

        frame, report = cleaned(raw, time_column="seen")

        assert frame["seen"].dtype == raw["seen"].dtype
        assert report["columns_coerced"] == {}


def test_the_input_frame_is_not_modified(cleaned) -> None:
    raw = pd.DataFrame({"label": ["a", "NA", "b"], "mass": ["1", "2", "?"]})
    before = raw.copy()

    cleaned(raw)

    pd.testing.assert_frame_equal(raw, before)


def test_pandas_string_columns(cleaned) -> None:
    raw = pd.DataFrame(
        {"label": pd.Series(["a", "b", "c"], dtype="string"), "mass": pd.Series(["1", pd.NA, "n/a"], dtype="string")}
    )

    frame, report = cleaned(raw)

    assert frame["mass"].iloc[0] == 1
    assert frame["mass"].isna().tolist() == [False, True, True]
    assert report["missing_tokens_replaced"] == {"mass": 1}


def test_a_boolean_column_with_missing_values(cleaned) -> None:
    """JSON records give such columns: [true, null, false] arrives as an object column."""
    frame, _ = cleaned(pd.DataFrame({"label": ["a", "b", "c"], "ringed": [True, None, False]}))

    assert frame["ringed"].tolist()[::2] == [True, False]


def test_numbers_in_a_mixed_object_column_are_kept(cleaned) -> None:
    """JSON records give such columns too: [1.5, null, "2"]."""
    frame, _ = cleaned(pd.DataFrame({"label": ["a", "b", "c"], "mass": [1.5, None, "2"]}))

    assert frame["mass"].iloc[0] == 1.5
    assert frame["mass"].iloc[2] == 2.0


@pytest.mark.parametrize(
    ("problem", "column"),
    [({"target": "kind"}, "kind"), ({"drop_columns": ["year"]}, "year"), ({"id_column": "penguin"}, "penguin")],
    ids=["target", "drop_columns", "id_column"],
)
def test_a_missing_column_fails_naming_it(cleaned, problem: dict, column: str) -> None:
    raw = pd.DataFrame({"label": ["a", "b"], "x": [1, 2]})

    with pytest.raises(CleaningError, match=f"'{column}'"):
        cleaned(raw, **problem)


class TestPositiveClass:
    def test_a_label_of_a_two_class_target_is_accepted(self, cleaned) -> None:
        frame, _ = cleaned(pd.DataFrame({"label": ["yes", "no", "no"], "x": [1, 2, 3]}), positive_class="no")
        assert set(frame["label"]) == {"yes", "no"}

    def test_a_label_the_target_lacks_fails_naming_the_labels(self, cleaned) -> None:
        expected = r"positive_class 'maybe' is not a label of target 'label': \['no', 'yes'\]"
        with pytest.raises(CleaningError, match=expected):
            cleaned(pd.DataFrame({"label": ["yes", "no"], "x": [1, 2]}), positive_class="maybe")

    def test_unquoted_yes_in_yaml_gets_a_hint(self, cleaned) -> None:
        with pytest.raises(CleaningError, match="quote the label"):
            cleaned(pd.DataFrame({"label": ["yes", "no"], "x": [1, 2]}), positive_class=True)  # YAML's `yes`

    def test_a_boolean_target_takes_true(self, cleaned) -> None:
        frame, _ = cleaned(pd.DataFrame({"label": [True, False, True], "x": [1, 2, 3]}), positive_class=True)
        assert set(frame["label"]) == {"True", "False"}

    def test_more_than_two_classes_fail(self, cleaned) -> None:
        with pytest.raises(CleaningError, match="has 3 classes"):
            cleaned(pd.DataFrame({"label": ["a", "b", "c"], "x": [1, 2, 3]}), positive_class="a")
