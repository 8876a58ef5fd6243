"""Training the baseline on top of the fitted feature pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from mlplatform.lib.features import fit_feature_pipeline
from mlplatform.lib.training import TrainingError, baseline_estimator, train

CLASSIFY = {"task": "classification", "target": "label"}
REGRESS = {"task": "regression", "target": "price"}


def separable() -> pd.DataFrame:
    """Two classes a model cannot miss: small x is 'low', large x is 'high'; the island says nothing."""
    return pd.DataFrame(
        {
            "label": ["low"] * 10 + ["high"] * 10,
            "x": np.r_[np.arange(10.0), np.arange(100.0, 110.0)],
            "island": ["Dream", "Biscoe"] * 10,
        }
    )


def linear(rows: int = 30) -> pd.DataFrame:
    x = np.arange(float(rows))
    return pd.DataFrame({"price": 3 * x + 2, "x": x, "island": ["Dream", "Biscoe", "Torgersen"] * (rows // 3)})


@pytest.mark.parametrize(("task", "estimator"), [("classification", LogisticRegression), ("regression", Ridge)])
def test_the_baseline_per_task(spec_from, task: str, estimator: type) -> None:
    assert isinstance(baseline_estimator(spec_from(problem={"task": task, "target": "y"})), estimator)


def test_a_classifier_learns_a_separable_problem(spec_from) -> None:
    spec = spec_from(problem=CLASSIFY)
    training = separable()

    model = train(fit_feature_pipeline(training, spec), training, spec)

    assert model.estimator_name == "LogisticRegression"
    assert model.classes == ("high", "low")
    assert model.training_rows == 20
    assert model.fit_seconds >= 0
    assert model.parameters["max_iter"] == 2000
    new = pd.DataFrame({"x": [-5.0, 4.0, 104.0, 500.0], "island": ["Dream", "Torgersen", None, "Biscoe"]})
    assert model.pipeline.predict(new).tolist() == ["low", "low", "high", "high"]
    assert model.pipeline.predict_proba(new).sum(axis=1) == pytest.approx([1.0] * 4)


def test_a_regressor_learns_a_linear_relation(spec_from) -> None:
    spec = spec_from(problem=REGRESS)
    training = linear()

    model = train(fit_feature_pipeline(training, spec), training, spec)

    assert model.estimator_name == "Ridge"
    assert model.classes == ()
    predicted = model.pipeline.predict(pd.DataFrame({"x": [5.0, 20.0], "island": ["Dream", "Dream"]}))
    assert predicted == pytest.approx([17.0, 62.0], abs=1.0)


def test_the_shipped_pipeline_is_features_then_estimator(spec_from) -> None:
    spec = spec_from(problem=CLASSIFY)
    training = separable()
    features = fit_feature_pipeline(training, spec)

    model = train(features, training, spec)

    assert [name for name, _ in model.pipeline.steps] == ["features", "estimator"]
    assert model.pipeline.named_steps["features"] is features  # reused as fitted, not refitted
    assert model.pipeline.feature_names_in_.tolist() == ["x", "island"]


def test_the_target_and_extra_columns_are_not_inputs(spec_from) -> None:
    spec = spec_from(problem=CLASSIFY)
    training = separable()
    features = fit_feature_pipeline(training, spec)

    model = train(features, training.assign(unrelated=range(20)), spec)

    assert model.pipeline.predict(training[["x", "island"]]).tolist() == training["label"].tolist()


def test_parameters_hold_only_plain_values(spec_from) -> None:
    spec = spec_from(problem=CLASSIFY)
    training = separable()

    model = train(fit_feature_pipeline(training, spec), training, spec)

    assert all(isinstance(value, (int, float, str, bool, type(None))) for value in model.parameters.values())
    assert model.parameters["C"] == 1.0


def test_a_single_class_fails_naming_the_estimator_and_target(spec_from) -> None:
    spec = spec_from(problem=CLASSIFY)
    training = separable().assign(label="low")

    with pytest.raises(TrainingError) as raised:
        train(fit_feature_pipeline(training, spec), training, spec)

    message = str(raised.value)
    assert message.startswith("LogisticRegression failed on 20 training rows, target 'label': ")
    assert "'low'" in message


def test_a_missing_target_value_fails_naming_the_target(spec_from) -> None:
    spec = spec_from(problem=REGRESS)
    training = linear().astype({"price": float})
    training.loc[3, "price"] = np.nan

    with pytest.raises(TrainingError, match=r"Ridge failed on 30 training rows, target 'price': .*NaN"):
        train(fit_feature_pipeline(training, spec), training, spec)
