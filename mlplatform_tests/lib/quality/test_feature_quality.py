"""The features gate: transformed features checked on a sample, numeric inputs and the target on every row, and
a failing sample checked again on every row so the counts are the whole data's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import FunctionTransformer

from mlplatform.lib.data import cleaning
from mlplatform.lib.features import features
from mlplatform.lib.quality.feature_quality import validate_features

CLASSIFY = {"task": "classification", "target": "label"}


@pytest.fixture
def penguin_splits(spec_from, penguins: pd.DataFrame):
    spec = spec_from()
    cleaned, _ = cleaning.clean(penguins, spec)
    training, holdout, _ = features.split(cleaned, spec)
    return spec, features.fit_feature_pipeline(training, spec), training, holdout


def logarithm(training: pd.DataFrame) -> ColumnTransformer:
    """A pipeline that turns zero into -inf and negative numbers into NaN, row by row."""
    log = FunctionTransformer(np.log, feature_names_out="one-to-one")
    return ColumnTransformer([("log", log, ["x"])], verbose_feature_names_out=False).fit(training[["x"]])


def labelled(x: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"x": x.astype(float), "label": np.where(np.arange(len(x)) % 2, "a", "b")})


def test_the_bundled_example_passes_on_a_sample(penguin_splits) -> None:
    spec, pipeline, training, holdout = penguin_splits

    report = validate_features(pipeline, training, holdout, spec, sample_rows=50)

    assert report.passed and not report.warnings, report.lines()
    assert report.extra["features_checked_rows"] == 100
    assert report.rows == len(training) + len(holdout)
    features_out, inputs = len(pipeline.get_feature_names_out()), len(pipeline.feature_names_in_)
    numeric, _ = features.feature_columns(training[list(pipeline.feature_names_in_)], spec)
    # not null + bounded, finite, target x2, and each input scored alone against the target
    assert len(report.outcomes) == 2 * features_out + len(numeric) + 2 + inputs


def test_small_splits_are_checked_whole(penguin_splits) -> None:
    spec, pipeline, training, holdout = penguin_splits

    report = validate_features(pipeline, training, holdout, spec)

    assert report.passed
    assert report.extra["features_checked_rows"] == len(training) + len(holdout)


def test_an_infinite_input_in_one_row_fails_naming_column_and_rule(penguin_splits) -> None:
    spec, pipeline, training, holdout = penguin_splits
    holdout = holdout.copy()
    holdout.loc[len(holdout) - 1, "body_mass_g"] = np.inf

    report = validate_features(pipeline, training, holdout, spec, sample_rows=5)

    assert not report.passed
    rows = len(training) + len(holdout)
    [line] = [line for line in report.lines() if "from feature pipeline inputs" in line]
    assert line.startswith("column 'body_mass_g': expect_column_values_to_be_between(")
    assert f"1 of {rows} rows unexpected" in line and "e.g. [inf]" in line


def test_features_that_are_not_finite_are_counted_on_every_row(spec_from) -> None:
    training = labelled(np.arange(1, 801))
    holdout = labelled(np.arange(1, 201))
    holdout.loc[::4, "x"] = -1.0  # log: NaN in a quarter of the holdout rows
    holdout.loc[1, "x"] = 0.0  # log: -inf
    spec = spec_from(problem=CLASSIFY)

    with np.errstate(divide="ignore", invalid="ignore"):
        report = validate_features(logarithm(training), training, holdout, spec, sample_rows=20)

    assert report.extra["features_checked_rows"] == 1000  # the sample failed, so every row was checked
    lines = report.lines()
    assert "column 'x': expect_column_values_to_not_be_null() failed: 50 of 1000 rows unexpected (5.00%)" in lines[0]
    assert lines[1].startswith("column 'x': expect_column_values_to_be_between(min_value=-1000000000000.0")
    assert "1 of 1000 rows unexpected" in lines[1] and "e.g. [-inf]" in lines[1]
    assert len(lines) == 2 and report.docs_index is None


@pytest.mark.parametrize(
    ("labels", "failure"),
    [
        (["a"] * 100, "column 'label': expect_column_unique_value_count_to_be_between(min_value=2) failed: observed 1"),
        (["a", None] * 50, "column 'label': expect_column_values_to_not_be_null() failed: 50 of 100 rows unexpected"),
    ],
)
def test_a_target_a_model_cannot_learn_from_fails(spec_from, labels: list, failure: str) -> None:
    training = labelled(np.arange(1, 101)).assign(label=labels)
    holdout = labelled(np.arange(1, 21))

    report = validate_features(logarithm(training), training, holdout, spec_from(problem=CLASSIFY))

    assert not report.passed
    assert any(line.startswith(failure) for line in report.lines()), report.lines()


def test_data_docs_are_written_for_failing_features(spec_from, tmp_path) -> None:
    training = labelled(np.arange(1, 101))
    holdout = labelled(np.arange(-20, 0))

    with np.errstate(invalid="ignore"):
        report = validate_features(
            logarithm(training), training, holdout, spec_from(problem=CLASSIFY), docs_dir=tmp_path / "docs"
        )

    assert not report.passed
    assert report.docs_index == tmp_path / "docs" / "index.html" and report.docs_index.is_file()


def test_a_copy_of_the_class_label_is_a_warning_naming_it_and_its_score(penguin_splits) -> None:
    spec, _, training, holdout = penguin_splits
    codes = {"Adelie": 1, "Chinstrap": 2, "Gentoo": 3}
    training, holdout = (part.assign(species_code=part["species"].map(codes)) for part in (training, holdout))
    pipeline = features.fit_feature_pipeline(training, spec)

    report = validate_features(pipeline, training, holdout, spec)

    assert report.passed  # a warning, never a block
    [warning] = report.warnings
    assert warning.rule.column == "species_code" and warning.observed == 1.0
    assert warning.describe().startswith(
        "column 'species_code': single_feature_does_not_predict_the_target(metric='balanced_accuracy', below=0.98)"
    )
    assert report.table().loc[0, "sample"] == "balanced_accuracy 1.0000 alone"
    assert report.extra["leakage"]["leaks"] == ["species_code"]
