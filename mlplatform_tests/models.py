"""Fitted models for tests, built the way the graph builds them: a feature pipeline, a tuned candidate, shipped."""

from __future__ import annotations

import pandas as pd

from mlplatform.lib.features.features import fit_feature_pipeline
from mlplatform.lib.spec import Candidate, ProjectSpec
from mlplatform.lib.training import candidates
from mlplatform.lib.training.training import TrainedModel, ship

LINEAR = {"classification": "logistic_regression", "regression": "ridge"}


def fitted(training: pd.DataFrame, spec: ProjectSpec, estimator: str | None = None, trials: int = 1) -> TrainedModel:
    """The linear candidate for the task (or ``estimator``) tuned for ``trials`` trials on ``training``."""
    estimator = estimator or LINEAR[spec.problem.task]
    features = fit_feature_pipeline(training, spec)
    tuned = candidates.tune(
        estimator,
        Candidate(estimator=estimator, trials=trials),
        candidates.transformed(features, training),
        training[spec.problem.target],
        spec,
    )
    return ship(tuned, features, len(training))
