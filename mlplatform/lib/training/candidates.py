"""Algorithm choice and tuning: a catalogue of estimators per task, each with a default search space, tuned
by Optuna with cross-validation on the training split only, seeded. The budget is a number of trials, so the
same spec and data give the same trials and scores on any machine; an optional cap in seconds stops the
search before the next fold once it has passed, and the candidate says so (its result then depends on the
machine's speed). Each candidate is tuned on its own, so each can run as its own step or pod."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import check_scoring
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.utils import _safe_indexing
from threadpoolctl import threadpool_limits

from mlplatform.lib.spec import Candidate, ProjectSpec, SearchRange
from mlplatform.lib.training import threads as thread_policy
from mlplatform.lib.training.metrics import scorer_for


class CandidateError(ValueError):
    """A candidate the catalogue does not know, or a search that could not fit; names the candidate."""


@dataclass(frozen=True)
class Recipe:
    make: Callable[[int], BaseEstimator]  # seed -> a fresh estimator
    space: dict[str, SearchRange]
    workers: str | None = None  # the estimator's own thread-count parameter (threadpoolctl does not reach it)


def _r(low: float, high: float, log: bool = False, integer: bool = False) -> SearchRange:
    return SearchRange(low=low, high=high, log=log, integer=integer)


# The tree families search the same hyperparameters for either task.
FOREST_SPACE = {
    "n_estimators": _r(50, 300, integer=True),
    "max_depth": _r(2, 20, integer=True),
    "min_samples_leaf": _r(1, 20, integer=True),
}
BOOSTING_SPACE = {
    "learning_rate": _r(0.01, 0.3, log=True),
    "max_leaf_nodes": _r(8, 64, integer=True),
    "l2_regularization": _r(1e-6, 1.0, log=True),
}
CATALOGUE: dict[str, dict[str, Recipe]] = {
    "classification": {
        "logistic_regression": Recipe(lambda seed: LogisticRegression(max_iter=2000), {"C": _r(1e-3, 1e3, log=True)}),
        "random_forest": Recipe(
            lambda seed: RandomForestClassifier(random_state=seed, n_jobs=1),
            FOREST_SPACE,
            workers="n_jobs",
        ),
        "hist_gradient_boosting": Recipe(
            lambda seed: HistGradientBoostingClassifier(random_state=seed),
            BOOSTING_SPACE,
        ),
    },
    "regression": {
        "ridge": Recipe(lambda seed: Ridge(), {"alpha": _r(1e-3, 1e3, log=True)}),
        "random_forest": Recipe(
            lambda seed: RandomForestRegressor(random_state=seed, n_jobs=1),
            FOREST_SPACE,
            workers="n_jobs",
        ),
        "hist_gradient_boosting": Recipe(
            lambda seed: HistGradientBoostingRegressor(random_state=seed),
            BOOSTING_SPACE,
        ),
    },
}
DEFAULT_CANDIDATES = {
    "classification": ("logistic_regression", "random_forest", "hist_gradient_boosting"),
    "regression": ("ridge", "random_forest", "hist_gradient_boosting"),
}


def candidates(spec: ProjectSpec) -> dict[str, Candidate]:
    """The spec's candidates, or the task's defaults; an unknown estimator fails naming the field."""
    task = spec.problem.task
    chosen = spec.training.candidates
    if chosen is None:
        chosen = {name: Candidate(estimator=name) for name in DEFAULT_CANDIDATES[task]}
    for name, candidate in chosen.items():
        if candidate.estimator not in CATALOGUE[task]:
            known = ", ".join(CATALOGUE[task])
            raise CandidateError(
                f"training.candidates.{name}.estimator: {candidate.estimator!r} is not a {task} estimator "
                f"(known: {known})"
            )
    return dict(chosen)


@dataclass(frozen=True)
class TunedCandidate:
    name: str
    estimator: BaseEstimator  # refitted on the whole training split with the best parameters
    best_params: dict
    cv_score: float  # mean cross-validated score of the best trial, in the scorer's sign (higher is better)
    cv_std: float
    trials: int  # trials completed (a trial the time cap cut short is not counted)
    seconds: float
    trials_asked: int | None = None  # the spec's budget; None in candidates stored before it was recorded
    stopped_by_time_cap: bool = False  # the spec's ``seconds`` fired: another machine may complete other trials
    trial_scores: tuple[float, ...] = ()  # every completed trial's mean score, in order
    threads: int | None = None  # threads each fit of the search used

    @property
    def reproducible(self) -> bool:
        return not self.stopped_by_time_cap


LIBRARY_DEFAULTS = 0  # ``tune(threads=...)``: leave OpenMP, BLAS and the forests' workers to the libraries


def tune(
    name: str,
    candidate: Candidate,
    features: np.ndarray,
    target: pd.Series,
    spec: ProjectSpec,
    threads: int | None = None,
) -> TunedCandidate:
    """Search the candidate's space with Optuna (TPE, seeded), scoring each trial by cross-validation on the
    training features; then refit the best on all of them. ``threads`` caps the OpenMP and BLAS threads and
    the forest's workers of every fit (None: ``threads.threads_per_fit`` for one search on this machine;
    ``LIBRARY_DEFAULTS``: no cap, what the libraries choose, for the bench's baseline only)."""
    if threads is None:
        threads = thread_policy.threads_per_fit(len(target))
    if threads == LIBRARY_DEFAULTS:
        return _tune(name, candidate, features, target, spec, None)
    with threadpool_limits(limits=threads):
        return _tune(name, candidate, features, target, spec, threads)


def _tune(
    name: str,
    candidate: Candidate,
    features: np.ndarray,
    target: pd.Series,
    spec: ProjectSpec,
    threads: int | None,
) -> TunedCandidate:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    recipe = CATALOGUE[spec.problem.task][candidate.estimator]
    space = candidate.search if candidate.search is not None else recipe.space
    # A parameter the spec fixes is not searched: the default space would otherwise override it in every trial.
    space = {key: bounds for key, bounds in space.items() if key not in candidate.params}
    seed = spec.training.seed
    folds_type = StratifiedKFold if spec.problem.task == "classification" else KFold
    folds = list(folds_type(n_splits=spec.training.cv_folds, shuffle=True, random_state=seed).split(features, target))
    scorer = scorer_for(spec.problem.primary_metric, _classes(target, spec))
    workers = {recipe.workers: threads} if recipe.workers and threads else {}

    def build(params: dict) -> BaseEstimator:
        try:
            return clone(recipe.make(seed)).set_params(**{**workers, **candidate.params, **params})
        except ValueError as exc:
            raise CandidateError(f"training.candidates.{name}: {exc}") from exc

    started = time.perf_counter()
    deadline = started + candidate.seconds if candidate.seconds is not None else None

    def objective(trial: optuna.Trial) -> float:
        params = {key: _suggest(trial, key, bounds) for key, bounds in space.items()}
        scores = cross_validate(build(params), features, target, folds, scorer, deadline)
        if scores is None:  # the cap passed before one of its folds: this trial is dropped and is the last
            trial.study.stop()
            raise optuna.TrialPruned("time cap")
        trial.set_user_attr("std", float(np.std(scores)))
        return float(np.mean(scores))

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    try:
        study.optimize(objective, n_trials=candidate.trials)
    except CandidateError:
        raise
    except Exception as exc:  # a fit that fails on this data must say which candidate, never become a score
        raise CandidateError(
            f"candidate {name!r} ({candidate.estimator}) failed to fit: {type(exc).__name__}: {exc}"
        ) from exc
    completed = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
    stopped = len(completed) < candidate.trials
    if not completed:
        raise CandidateError(
            f"candidate {name!r} ({candidate.estimator}): the time cap of {candidate.seconds:g} s "
            f"(training.candidates.{name}.seconds) passed before its first trial finished its "
            f"{len(folds)} folds; raise the cap, or remove it and let the {candidate.trials} trial(s) decide"
        )
    best = study.best_trial
    estimator = build(best.params).fit(features, target)
    if workers and recipe.workers not in candidate.params:  # predict as it always did, whatever trained it
        estimator.set_params(**{recipe.workers: 1})
    return TunedCandidate(
        name=name,
        estimator=estimator,
        best_params={**candidate.params, **best.params},
        cv_score=float(best.value),
        cv_std=float(best.user_attrs["std"]),
        trials=len(completed),
        seconds=time.perf_counter() - started,
        trials_asked=candidate.trials,
        stopped_by_time_cap=stopped,
        trial_scores=tuple(float(trial.value) for trial in completed),
        threads=threads,
    )


def cross_validate(
    estimator: BaseEstimator,
    features: np.ndarray,
    target: pd.Series,
    folds: list[tuple[np.ndarray, np.ndarray]],
    scorer,
    deadline: float | None = None,
) -> list[float] | None:
    """``cross_val_score`` fold by fold (the same folds, clones and scorer, so the same scores), checking the
    deadline (a ``time.perf_counter()`` value) before each fold: None once it has passed, so a time cap
    overshoots by at most one fold's fit and score."""
    scorer = check_scoring(estimator, scoring=scorer)  # a metric's name or a scorer, as cross_val_score takes
    scores = []
    for train, test in folds:
        if deadline is not None and time.perf_counter() >= deadline:
            return None
        fitted = clone(estimator).fit(_safe_indexing(features, train), _safe_indexing(target, train))
        scores.append(float(scorer(fitted, _safe_indexing(features, test), _safe_indexing(target, test))))
    return scores


def tune_all(
    feature_pipeline: ColumnTransformer, training: pd.DataFrame, spec: ProjectSpec, threads: int | None = None
) -> dict[str, TunedCandidate]:
    """Every candidate, one after another in this process: what the Dagster graph does as parallel steps."""
    features = transformed(feature_pipeline, training)
    target = training[spec.problem.target]
    return {
        name: tune(name, candidate, features, target, spec, threads) for name, candidate in candidates(spec).items()
    }


def _suggest(trial, key: str, bounds: SearchRange):
    if bounds.choices is not None:
        return trial.suggest_categorical(key, list(bounds.choices))
    if bounds.integer:
        return trial.suggest_int(key, int(bounds.low), int(bounds.high), log=bounds.log)
    return trial.suggest_float(key, bounds.low, bounds.high, log=bounds.log)


def _classes(target: pd.Series, spec: ProjectSpec) -> list[str] | None:
    return sorted(map(str, target.unique())) if spec.problem.task == "classification" else None


def transformed(feature_pipeline: ColumnTransformer, frame: pd.DataFrame) -> np.ndarray:
    return feature_pipeline.transform(frame[list(feature_pipeline.feature_names_in_)])
