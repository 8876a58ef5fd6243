"""Algorithm choice and tuning: seeded Optuna searches scored by cross-validation on the training split."""

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score

from mlplatform.lib.spec import Candidate
from mlplatform.lib.training import candidates
from mlplatform.lib.training.metrics import scorer_for


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


def test_a_fixed_param_is_not_searched_in_the_default_space(spec) -> None:
    features, target = xor()
    candidate = Candidate(estimator="random_forest", params={"n_estimators": 7}, trials=3)

    tuned = candidates.tune("seven_trees", candidate, features, target, spec)

    assert tuned.best_params["n_estimators"] == 7  # the default space searches 50..300 trees
    assert len(tuned.estimator.estimators_) == 7


def test_a_fit_that_fails_raises_with_the_candidate_never_a_score(spec) -> None:
    features, target = xor()
    broken = Candidate(estimator="logistic_regression", params={"solver": "no-such-solver"}, trials=1)
    with pytest.raises(candidates.CandidateError, match="candidate 'broken' \\(logistic_regression\\) failed to fit"):
        candidates.tune("broken", broken, features, target, spec)


@pytest.mark.parametrize(
    ("task", "metric"), [("classification", "f1_macro"), ("classification", "log_loss"), ("regression", "rmse")]
)
def test_the_fold_by_fold_loop_scores_exactly_as_cross_val_score(task: str, metric: str) -> None:
    if task == "classification":
        features, labels = make_classification(
            n_samples=400, n_features=6, n_classes=3, n_informative=4, random_state=1
        )
        target = pd.Series(np.array(["a", "b", "c"])[labels])
        folds = StratifiedKFold(n_splits=4, shuffle=True, random_state=3)
        estimator = candidates.CATALOGUE[task]["logistic_regression"].make(3)
    else:
        features, values = make_regression(n_samples=400, n_features=6, noise=5.0, random_state=1)
        target = pd.Series(values)
        folds = KFold(n_splits=4, shuffle=True, random_state=3)
        estimator = candidates.CATALOGUE[task]["random_forest"].make(3).set_params(n_estimators=20)
    scorer = scorer_for(metric, ["a", "b", "c"] if task == "classification" else None)

    ours = candidates.cross_validate(estimator, features, target, list(folds.split(features, target)), scorer)
    theirs = cross_val_score(estimator, features, target, cv=folds, scoring=scorer, error_score="raise")

    assert ours == theirs.tolist()  # bit for bit: the same folds, clones and scorer


def test_without_a_cap_the_same_spec_and_data_give_the_same_trials_and_scores(spec) -> None:
    features, target = xor()
    candidate = Candidate(estimator="random_forest", trials=4, params={"n_estimators": 20})
    first = candidates.tune("forest", candidate, features, target, spec)
    again = candidates.tune("forest", candidate, features, target, spec)

    assert len(first.trial_scores) == first.trials == first.trials_asked == 4 and not first.stopped_by_time_cap
    assert (again.trial_scores, again.best_params, again.cv_score, again.cv_std) == (
        first.trial_scores,
        first.best_params,
        first.cv_score,
        first.cv_std,
    )


def slow_forest_data() -> tuple[np.ndarray, pd.Series]:
    features, labels = make_classification(n_samples=2000, n_features=20, random_state=0)
    return features, pd.Series(np.where(labels == 1, "yes", "no"))


SLOW_FOREST = {"n_estimators": 40, "max_features": 0.5, "max_depth": None}


def one_fold_seconds(features: np.ndarray, target: pd.Series, folds: int) -> float:
    """The slower of two fits of the slow forest on a fold's share of the rows, on this machine now."""
    rows = len(target) * (folds - 1) // folds
    seconds = []
    for _ in range(2):
        clock = time.perf_counter()
        RandomForestClassifier(random_state=0, n_jobs=1, **SLOW_FOREST).fit(features[:rows], target[:rows])
        seconds.append(time.perf_counter() - clock)
    return max(seconds)


def test_the_fold_loop_stops_at_the_first_fold_after_the_deadline() -> None:
    features, target = slow_forest_data()
    folds = list(StratifiedKFold(n_splits=10, shuffle=True, random_state=0).split(features, target))
    fold = one_fold_seconds(features, target, 10)
    estimator = RandomForestClassifier(random_state=0, n_jobs=1, **SLOW_FOREST)

    clock = time.perf_counter()
    scores = candidates.cross_validate(
        estimator, features, target, folds, scorer_for("accuracy", None), clock + 2 * fold
    )
    elapsed = time.perf_counter() - clock

    assert scores is None
    assert elapsed < 2 * fold + 1.5 * fold  # the deadline plus the one fold that had started (and some noise)


def test_a_time_cap_stops_the_search_inside_a_trial_and_marks_the_candidate(spec_from) -> None:
    """Ten folds of a slow forest per trial: the old cap, checked between trials, ran a whole second trial
    past the deadline (about ten folds); now the overshoot is one fold's fit, plus the refit of the best."""
    spec = spec_from(
        problem={"task": "classification", "target": "label", "metric": "accuracy"},
        training={"cv_folds": 10, "seed": 7},
    )
    features, target = slow_forest_data()
    fold = one_fold_seconds(features, target, 10)
    cap = 15 * fold  # one trial (ten folds) and a half
    candidate = Candidate(
        estimator="random_forest",
        params=SLOW_FOREST,
        search={"min_samples_leaf": {"choices": [1]}},
        trials=10,
        seconds=cap,
    )

    tuned = candidates.tune("slow", candidate, features, target, spec, threads=1)

    assert tuned.stopped_by_time_cap and not tuned.reproducible
    assert (tuned.trials, tuned.trials_asked, len(tuned.trial_scores)) == (1, 10, 1)
    refit = fold * 10 / 9
    assert tuned.seconds < cap + fold + refit + 2 * fold  # two folds' worth of noise, far below a second trial


def test_a_cap_shorter_than_one_trial_fails_naming_the_candidate_and_the_field(spec) -> None:
    features, target = slow_forest_data()
    candidate = Candidate(estimator="random_forest", params=SLOW_FOREST, trials=3, seconds=1e-6)
    with pytest.raises(candidates.CandidateError, match=r"training.candidates.slow.seconds.*before its first trial"):
        candidates.tune("slow", candidate, features, target, spec, threads=1)


def test_a_search_uses_the_threads_it_is_given_and_ships_a_single_threaded_forest(spec) -> None:
    features, target = xor()
    tuned = candidates.tune("forest", Candidate(estimator="random_forest", trials=1), features, target, spec, threads=2)
    policy = candidates.tune("forest", Candidate(estimator="random_forest", trials=1), features, target, spec)

    assert tuned.threads == 2 and policy.threads == 1  # 300 rows: one thread per fit (mlplatform.lib.training.threads)
    assert tuned.estimator.get_params()["n_jobs"] == 1 and tuned.cv_score == policy.cv_score
