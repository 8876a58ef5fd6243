"""Training a baseline estimator on top of the fitted feature pipeline."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline

from mlplatform.lib.spec import ProjectSpec


class TrainingError(RuntimeError):
    """Fitting failed; the message says which estimator, on what data."""


@dataclass(frozen=True)
class TrainedModel:
    """The shipped model (feature pipeline + estimator) and how it came to be."""

    pipeline: Pipeline
    estimator_name: str
    parameters: dict
    training_rows: int
    fit_seconds: float
    classes: tuple[str, ...] = ()


def baseline_estimator(spec: ProjectSpec) -> BaseEstimator:
    """A sound, fast, well-understood baseline per task: regularised linear models."""
    if spec.problem.task == "classification":
        return LogisticRegression(max_iter=2000)
    return Ridge(alpha=1.0)


def train(feature_pipeline: ColumnTransformer, training: pd.DataFrame, spec: ProjectSpec) -> TrainedModel:
    """Fit the baseline on the transformed training split; the feature pipeline is reused as fitted."""
    target = spec.problem.target
    estimator = baseline_estimator(spec)
    inputs = list(feature_pipeline.feature_names_in_)
    started = time.perf_counter()
    try:
        estimator.fit(feature_pipeline.transform(training[inputs]), training[target])
    except ValueError as exc:
        raise TrainingError(
            f"{type(estimator).__name__} failed on {len(training)} training rows, target {target!r}: {exc}"
        ) from exc
    elapsed = time.perf_counter() - started
    pipeline = Pipeline([("features", feature_pipeline), ("estimator", estimator)])
    classes = tuple(str(c) for c in getattr(estimator, "classes_", ()))
    return TrainedModel(
        pipeline=pipeline,
        estimator_name=type(estimator).__name__,
        parameters={
            k: v for k, v in estimator.get_params().items() if isinstance(v, (int, float, str, bool, type(None)))
        },
        training_rows=len(training),
        fit_seconds=elapsed,
        classes=classes,
    )
