"""Algorithm choice and tuning: a catalogue of estimators per task, each with a default search space, tuned
by Optuna with cross-validation on the training split only, seeded, within a budget of trials (and an
optional cap in seconds). Each candidate is tuned on its own, so each can run as its own step or pod."""

from __future__ import annotations

import contextlib
import os
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
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from threadpoolctl import threadpool_limits

from mlplatform.lib.evaluation import scorer_for
from mlplatform.lib.spec import Candidate, ProjectSpec, SearchRange


class CandidateError(ValueError):
    """A candidate the catalogue does not know, or a search that could not fit; names the candidate."""


@dataclass(frozen=True)
class Recipe:
    make: Callable[[int], BaseEstimator]  # seed -> a fresh estimator
    space: dict[str, SearchRange]


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
    trials: int
    seconds: float


def threads_per_step(concurrent_steps: int) -> int:
    """The threads each of ``concurrent_steps`` searches running side by side on this machine may use: its
    share of the cores. Histogram gradient boosting (OpenMP) and BLAS would otherwise each start a thread
    per core, and on 2 cores two such steps ran 1.2x slower together than one after the other."""
    cores = len(os.sched_getaffinity(0))
    return max(1, cores // max(1, min(cores, concurrent_steps)))


def tune(
    name: str,
    candidate: Candidate,
    features: np.ndarray,
    target: pd.Series,
    spec: ProjectSpec,
    threads: int | None = None,
) -> TunedCandidate:
    """Search the candidate's space with Optuna (TPE, seeded), scoring each trial by cross-validation on the
    training features; then refit the best on all of them. ``threads`` caps the OpenMP and BLAS threads of
    the search (None: as many as the libraries like, all the cores)."""
    with threadpool_limits(limits=threads) if threads else contextlib.nullcontext():
        return _tune(name, candidate, features, target, spec)


def _tune(
    name: str, candidate: Candidate, features: np.ndarray, target: pd.Series, spec: ProjectSpec
) -> TunedCandidate:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    recipe = CATALOGUE[spec.problem.task][candidate.estimator]
    space = candidate.search if candidate.search is not None else recipe.space
    seed = spec.training.seed
    folds_type = StratifiedKFold if spec.problem.task == "classification" else KFold
    folds = folds_type(n_splits=spec.training.cv_folds, shuffle=True, random_state=seed)
    scorer = scorer_for(spec.problem.primary_metric, _classes(target, spec))

    def build(params: dict) -> BaseEstimator:
        try:
            return clone(recipe.make(seed)).set_params(**{**candidate.params, **params})
        except ValueError as exc:
            raise CandidateError(f"training.candidates.{name}: {exc}") from exc

    def objective(trial: optuna.Trial) -> float:
        params = {key: _suggest(trial, key, bounds) for key, bounds in space.items()}
        scores = cross_val_score(build(params), features, target, cv=folds, scoring=scorer, error_score="raise")
        trial.set_user_attr("std", float(np.std(scores)))
        return float(np.mean(scores))

    started = time.perf_counter()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    try:
        study.optimize(objective, n_trials=candidate.trials, timeout=candidate.seconds)
    except CandidateError:
        raise
    except Exception as exc:  # a fit that fails on this data must say which candidate, never become a score
        raise CandidateError(
            f"candidate {name!r} ({candidate.estimator}) failed to fit: {type(exc).__name__}: {exc}"
        ) from exc
    best = study.best_trial
    estimator = build(best.params).fit(features, target)
    return TunedCandidate(
        name=name,
        estimator=estimator,
        best_params={**candidate.params, **best.params},
        cv_score=float(best.value),
        cv_std=float(best.user_attrs["std"]),
        trials=len(study.trials),
        seconds=time.perf_counter() - started,
    )


def tune_all(
    feature_pipeline: ColumnTransformer, training: pd.DataFrame, spec: ProjectSpec
) -> dict[str, TunedCandidate]:
    """Every candidate, one after another in this process: what the Dagster graph does as parallel steps."""
    features = transformed(feature_pipeline, training)
    target = training[spec.problem.target]
    return {name: tune(name, candidate, features, target, spec) for name, candidate in candidates(spec).items()}


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
