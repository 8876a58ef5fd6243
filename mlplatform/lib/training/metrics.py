"""The metrics a model is judged by and the scorers that tune it: one module that candidates (tuning),
evaluation (the holdout report) and the promotion gate all import, so none of them imports another for them."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from mlplatform.lib.spec import LOWER_IS_BETTER, ProjectSpec

CALIBRATION_BINS = 10
_SCORERS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced_accuracy",
    "f1_macro": "f1_macro",
    "f1_weighted": "f1_weighted",
    "roc_auc": "roc_auc_ovr_weighted",
    "log_loss": "neg_log_loss",
    "rmse": "neg_root_mean_squared_error",
    "mae": "neg_mean_absolute_error",
    "r2": "r2",
}


class MetricError(ValueError):
    """A metric that cannot be computed for this model or spec; the message names the class or metric."""


def scorer_for(metric: str, classes: list[str] | None):
    """A scikit-learn scorer for the metric, higher is better (losses negated)."""
    if metric == "log_loss" and classes:  # the stock scorer infers labels from the sample, which may lack a class
        return skm.make_scorer(skm.log_loss, greater_is_better=False, response_method="predict_proba", labels=classes)
    return _SCORERS[metric]


def natural(metric: str, cv_score: float) -> float:
    """A cross-validated score (higher is better, losses negated) in the metric's own sign."""
    return -cv_score if metric in LOWER_IS_BETTER else cv_score


def positive_label(classes, spec: ProjectSpec) -> str | None:
    """The positive class of a two-class model: the spec's ``problem.positive_class``, else the alphabetically
    second label (None for more than two classes)."""
    if len(classes) != 2:
        return None
    chosen = spec.problem.positive_class
    if chosen is not None and chosen not in classes:
        raise MetricError(f"problem.positive_class {chosen!r} is not one of the model's classes {list(classes)}")
    return chosen if chosen is not None else str(classes[1])


def classification_metrics(truth, predicted, probabilities, classes, positive: str | None = None) -> dict[str, float]:
    """``positive``: for two classes, the label that precision, recall, f1, average precision, ROC AUC and the
    Brier score take as positive (default: the second)."""
    truth = np.asarray(truth).astype(str)
    column = list(classes).index(positive) if positive is not None else 1
    predicted = np.asarray(predicted).astype(str)
    scores = {
        **label_metrics(truth, predicted),
        "log_loss": skm.log_loss(truth, probabilities, labels=list(classes)),
        "brier": skm.brier_score_loss(truth, probabilities, labels=list(classes))
        if len(classes) > 2
        else skm.brier_score_loss(truth == classes[column], probabilities[:, column]),
        "calibration_error": calibration_error(truth, probabilities, classes),
    }
    if len(classes) == 2:  # of the positive class alone: what a yes/no target's users ask about
        label = str(classes[column])
        scores["precision"] = skm.precision_score(truth, predicted, pos_label=label, zero_division=0)
        scores["recall"] = skm.recall_score(truth, predicted, pos_label=label, zero_division=0)
        scores["f1"] = skm.f1_score(truth, predicted, pos_label=label, zero_division=0)
    present = set(truth)
    if len(present) == len(classes) and len(classes) > 1:
        # ROC AUC needs every class in the holdout; a missing one leaves it undefined, so it is left out.
        if len(classes) == 2:
            is_positive, score = truth == classes[column], probabilities[:, column]
            scores["roc_auc"] = skm.roc_auc_score(is_positive, score)
            scores["average_precision"] = skm.average_precision_score(is_positive, score)
        else:
            scores["roc_auc"] = skm.roc_auc_score(
                truth, probabilities, multi_class="ovr", average="weighted", labels=list(classes)
            )
    return {name: float(value) for name, value in scores.items()}


def label_metrics(truth, predicted) -> dict[str, float]:
    """The metrics of predicted labels alone, without probabilities: defined for any true labels, so a row
    whose true class the model never learned counts as a wrong answer (live labels may hold one)."""
    truth, predicted = np.asarray(truth).astype(str), np.asarray(predicted).astype(str)
    scores = {
        "accuracy": skm.accuracy_score(truth, predicted),
        "balanced_accuracy": skm.balanced_accuracy_score(truth, predicted),
        "f1_macro": skm.f1_score(truth, predicted, average="macro", zero_division=0),
        "f1_weighted": skm.f1_score(truth, predicted, average="weighted", zero_division=0),
        "precision_macro": skm.precision_score(truth, predicted, average="macro", zero_division=0),
        "recall_macro": skm.recall_score(truth, predicted, average="macro", zero_division=0),
    }
    return {name: float(value) for name, value in scores.items()}


def calibration_error(truth, probabilities: np.ndarray, classes, bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error of the predicted class: the row-weighted gap between how sure the model
    was and how often it was right, over equal-width confidence bins (0 is perfectly calibrated)."""
    correct = np.asarray(truth).astype(str) == np.asarray(classes, dtype=str)[probabilities.argmax(axis=1)]
    confidence = probabilities.max(axis=1)
    which = np.clip(np.digitize(confidence, np.linspace(0, 1, bins + 1)) - 1, 0, bins - 1)
    gap = sum(abs(correct[which == b].mean() - confidence[which == b].mean()) * (which == b).sum() for b in set(which))
    return float(gap / len(confidence))


def regression_metrics(truth, predicted) -> dict[str, float]:
    return {
        "rmse": float(skm.root_mean_squared_error(truth, predicted)),
        "mae": float(skm.mean_absolute_error(truth, predicted)),
        "r2": float(skm.r2_score(truth, predicted)),
    }
