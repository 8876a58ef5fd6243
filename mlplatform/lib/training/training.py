"""The model that ships: the best tuned candidate behind the fitted feature pipeline, and how it came to be.

Candidates are tuned one by one (``mlplatform.lib.training.candidates``, each its own Dagster step); here the best is
chosen by cross-validated score on the training split, never by the holdout, which stays unseen until
evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

if TYPE_CHECKING:
    from mlplatform.lib.training.candidates import TunedCandidate


class TrainingError(RuntimeError):
    """Training produced nothing to ship; the message says what was missing."""


@dataclass(frozen=True)
class TrainedModel:
    """The shipped model (feature pipeline + estimator) and how it came to be."""

    pipeline: Pipeline
    estimator_name: str
    parameters: dict
    training_rows: int
    fit_seconds: float
    classes: tuple[str, ...] = ()
    candidate: str = ""  # the name of the candidate in the spec it won as
    cv_score: float | None = None  # its mean cross-validated score (higher is better; losses negated)


def select(tuned: Iterable[TunedCandidate]) -> TunedCandidate:
    """The candidate with the best mean cross-validated score; on a tie, the first named (usually simplest)."""
    ranked = list(tuned)
    if not ranked:
        raise TrainingError("no candidate was tuned: the spec's training.candidates is empty")
    return max(ranked, key=lambda candidate: candidate.cv_score)  # max keeps the first of equal scores


def ship(tuned: TunedCandidate, feature_pipeline: ColumnTransformer, training_rows: int) -> TrainedModel:
    """The tuned estimator (already refitted on the whole training split) behind the feature pipeline."""
    estimator = tuned.estimator
    return TrainedModel(
        pipeline=Pipeline([("features", feature_pipeline), ("estimator", estimator)]),
        estimator_name=type(estimator).__name__,
        parameters={
            k: v for k, v in estimator.get_params().items() if isinstance(v, (int, float, str, bool, type(None)))
        },
        training_rows=training_rows,
        fit_seconds=tuned.seconds,
        classes=tuple(str(c) for c in getattr(estimator, "classes_", ())),
        candidate=tuned.name,
        cv_score=tuned.cv_score,
    )
