"""Fitted models for tests, built the way the graph builds them: a feature pipeline, a tuned candidate, shipped."""

from __future__ import annotations

import pandas as pd

from mlplatform.lib.features.features import RowIds, fit_feature_pipeline, input_schema
from mlplatform.lib.monitoring.reference import reference_sample
from mlplatform.lib.registry.registry import ModelVersion, Registry, lineage_labels
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


def save_version(models: Registry, spec: ProjectSpec, model: TrainedModel, training: pd.DataFrame) -> ModelVersion:
    """``model`` stored in ``models`` as the graph stores it: its input schema, lineage labels (data version "d",
    run "r", no metrics), training row ids and reference sample."""
    schema = input_schema(model.pipeline.named_steps["features"], training, spec, model.classes)
    labels = lineage_labels(spec=spec, data_version="d", run_id="r", metrics={}, model=model)
    return models.save(
        model,
        schema=schema,
        labels=labels,
        metrics={},
        training_rows=RowIds.of(training, spec),
        reference=reference_sample(model, training, schema),
    )
