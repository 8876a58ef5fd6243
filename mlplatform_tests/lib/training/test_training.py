"""Choosing the model that ships among tuned candidates, and shipping it behind the feature pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlplatform.lib.features.features import fit_feature_pipeline
from mlplatform.lib.spec import Candidate
from mlplatform.lib.training import candidates
from mlplatform.lib.training.training import TrainingError, select, ship
from mlplatform_tests.models import fitted

CLASSIFY = {"task": "classification", "target": "label"}


def separable() -> pd.DataFrame:
    """Two classes a model cannot miss: small x is 'low', large x is 'high'; the island says nothing."""
    return pd.DataFrame(
        {
            "label": ["low"] * 10 + ["high"] * 10,
            "x": np.r_[np.arange(10.0), np.arange(100.0, 110.0)],
            "island": ["Dream", "Biscoe"] * 10,
        }
    )


def xor(rows: int = 240, seed: int = 3) -> pd.DataFrame:
    """The class is the sign of a*b: no linear model can learn it, a forest can."""
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(-1, 1, rows), rng.uniform(-1, 1, rows)
    return pd.DataFrame({"label": np.where(a * b > 0, "same", "opposite"), "a": a, "b": b})


def test_selection_picks_the_model_that_fits_data_with_a_known_answer(spec_from) -> None:
    spec = spec_from(problem={**CLASSIFY, "metric": "accuracy"})
    training = xor()
    features = fit_feature_pipeline(training, spec)
    inputs, target = candidates.transformed(features, training), training["label"]
    tuned = [
        candidates.tune(name, Candidate(estimator=name, trials=2), inputs, target, spec)
        for name in ("logistic_regression", "random_forest")
    ]

    winner = select(tuned)

    assert winner.name == "random_forest"
    assert winner.cv_score > 0.85 > tuned[0].cv_score  # a linear model is near chance on XOR


def test_a_tie_goes_to_the_first_named(spec_from) -> None:
    spec = spec_from(problem=CLASSIFY)
    training = separable()
    features = fit_feature_pipeline(training, spec)
    inputs, target = candidates.transformed(features, training), training["label"]
    first, second = (
        candidates.tune(name, Candidate(estimator="logistic_regression", trials=1), inputs, target, spec)
        for name in ("first", "second")
    )

    assert first.cv_score == second.cv_score
    assert select([first, second]).name == "first"


def test_nothing_to_select_fails_clearly() -> None:
    with pytest.raises(TrainingError, match="no candidate was tuned"):
        select([])


def test_the_shipped_pipeline_is_features_then_the_tuned_estimator(spec_from) -> None:
    spec = spec_from(problem=CLASSIFY)
    training = separable()

    model = fitted(training, spec)

    assert [name for name, _ in model.pipeline.steps] == ["features", "estimator"]
    assert model.pipeline.feature_names_in_.tolist() == ["x", "island"]
    assert model.estimator_name == "LogisticRegression"
    assert model.candidate == "logistic_regression"
    assert model.classes == ("high", "low")
    assert model.training_rows == 20
    assert all(isinstance(value, (int, float, str, bool, type(None))) for value in model.parameters.values())
    new = pd.DataFrame({"x": [-5.0, 4.0, 104.0, 500.0], "island": ["Dream", "Torgersen", None, "Biscoe"]})
    assert model.pipeline.predict(new).tolist() == ["low", "low", "high", "high"]
    assert model.pipeline.predict_proba(new).sum(axis=1) == pytest.approx([1.0] * 4)


def test_the_feature_pipeline_is_shipped_as_fitted(spec_from) -> None:
    spec = spec_from(problem=CLASSIFY)
    training = separable()
    features = fit_feature_pipeline(training, spec)
    tuned = candidates.tune(
        "lr",
        Candidate(estimator="logistic_regression", trials=1),
        candidates.transformed(features, training),
        training["label"],
        spec,
    )

    model = ship(tuned, features, len(training))

    assert model.pipeline.named_steps["features"] is features  # reused as fitted, not refitted
    assert model.pipeline.named_steps["estimator"] is tuned.estimator
    assert model.cv_score == tuned.cv_score


def test_a_single_class_fails_naming_the_candidate(spec_from) -> None:
    spec = spec_from(problem=CLASSIFY)
    training = separable().assign(label="low")

    with pytest.raises(candidates.CandidateError, match=r"candidate 'logistic_regression' \(logistic_regression\)"):
        fitted(training, spec)
