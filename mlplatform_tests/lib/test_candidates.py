"""Algorithm choice and tuning: seeded Optuna searches scored by cross-validation on the training split."""

import numpy as np
import pandas as pd
import pytest

from mlplatform.lib import candidates
from mlplatform.lib.spec import Candidate


def xor(rows: int = 300, seed: int = 0) -> tuple[np.ndarray, pd.Series]:
    """A known answer: the class is the sign of x*y, which no linear model can learn and a forest can."""
    rng = np.random.default_rng(seed)
    features = rng.uniform(-1, 1, size=(rows, 2))
    return features, pd.Series(np.where(features[:, 0] * features[:, 1] > 0, "same", "opposite"))


@pytest.fixture
def spec(spec_from):
    return spec_from(
        problem={"task": "classification", "target": "label", "metric": "accuracy"},
        training={"cv_folds": 3, "seed": 7},
    )


def test_the_defaults_are_three_families_per_task(spec_from) -> None:
    regression = spec_from(problem={"task": "regression", "target": "y"}, training={})  # no candidates named
    assert list(candidates.candidates(regression)) == ["ridge", "random_forest", "hist_gradient_boosting"]


def test_an_unknown_estimator_is_named(spec_from) -> None:
    spec = spec_from(training={"candidates": {"mine": {"estimator": "xgboost"}}})
    with pytest.raises(candidates.CandidateError, match=r"training.candidates.mine.estimator: 'xgboost'"):
        candidates.candidates(spec)


def test_tuning_finds_the_model_that_fits_the_data(spec) -> None:
    features, target = xor()
    linear = candidates.tune("linear", Candidate(estimator="logistic_regression", trials=3), features, target, spec)
    forest = candidates.tune("forest", Candidate(estimator="random_forest", trials=3), features, target, spec)

    assert linear.cv_score < 0.7  # no better than a coin with a slight bias
    assert forest.cv_score > 0.9
    assert forest.trials == 3 and set(forest.best_params) == {"n_estimators", "max_depth", "min_samples_leaf"}
    assert (forest.estimator.predict(features) == target).mean() > 0.9


def test_a_seeded_search_is_reproducible(spec) -> None:
    features, target = xor()
    candidate = Candidate(estimator="hist_gradient_boosting", trials=3)
    first = candidates.tune("boost", candidate, features, target, spec)
    again = candidates.tune("boost", candidate, features, target, spec)

    assert (first.best_params, first.cv_score) == (again.best_params, again.cv_score)


def test_a_search_capped_to_one_thread_reaches_the_same_model(spec) -> None:
    features, target = xor()
    candidate = Candidate(estimator="hist_gradient_boosting", trials=3)
    free = candidates.tune("boost", candidate, features, target, spec)
    capped = candidates.tune("boost", candidate, features, target, spec, threads=1)

    assert (capped.best_params, capped.cv_score) == (free.best_params, free.cv_score)


@pytest.mark.parametrize(
    ("concurrent", "at_least", "at_most"), [(1, "cores", "cores"), (3, 1, "cores"), (10_000, 1, 1)]
)
def test_parallel_searches_share_the_cores(concurrent: int, at_least, at_most) -> None:
    import os

    cores = len(os.sched_getaffinity(0))
    threads = candidates.threads_per_step(concurrent)

    assert (cores if at_least == "cores" else at_least) <= threads <= (cores if at_most == "cores" else at_most)
    assert threads * min(concurrent, cores) <= cores  # never more threads than cores in all


def test_fixed_params_and_a_custom_space(spec) -> None:
    features, target = xor()
    candidate = Candidate(
        estimator="random_forest",
        params={"n_estimators": 20},
        search={"max_depth": {"choices": [1]}},
        trials=2,
    )
    tuned = candidates.tune("stump_forest", candidate, features, target, spec)

    assert tuned.best_params == {"n_estimators": 20, "max_depth": 1}
    assert tuned.estimator.get_params()["max_depth"] == 1


def test_a_fit_that_fails_raises_with_the_candidate_never_a_score(spec) -> None:
    features, target = xor()
    broken = Candidate(estimator="logistic_regression", params={"solver": "no-such-solver"}, trials=1)
    with pytest.raises(candidates.CandidateError, match="candidate 'broken' \\(logistic_regression\\) failed to fit"):
        candidates.tune("broken", broken, features, target, spec)
