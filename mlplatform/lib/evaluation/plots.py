"""The evaluation's plots, as PNG bytes (matplotlib's object API: no global pyplot state, safe in threads)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

# Scatter plots beyond this many points show a seeded sample: the picture is the same, the PNG stays small.
MAX_POINTS = 20_000


def figure_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def image_markdown(name: str, png: bytes) -> str:
    """An image inlined as a data URI, so it shows in the Dagster UI's metadata without a file server."""
    return f"![{name}](data:image/png;base64,{base64.b64encode(png).decode()})"


def confusion_matrix_png(truth, predicted, classes) -> bytes:
    labels = list(classes)
    matrix = skm.confusion_matrix(np.asarray(truth).astype(str), np.asarray(predicted).astype(str), labels=labels)
    size = max(4.0, 0.6 * len(labels) + 2)
    figure = Figure(figsize=(size, size))
    axes = figure.subplots()
    skm.ConfusionMatrixDisplay(matrix, display_labels=labels).plot(ax=axes, colorbar=False, cmap="Blues")
    axes.set_title("Confusion matrix (holdout)")
    return figure_png(figure)


def _one_vs_rest(
    truth, probabilities: np.ndarray, classes, positive: str | None = None
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, is-this-class, its probability) per curve: the positive class alone for two classes."""
    truth = np.asarray(truth).astype(str)
    shown = range(len(classes))
    if len(classes) == 2:
        shown = [list(classes).index(positive) if positive is not None else 1]
    return [
        (str(classes[i]), truth == str(classes[i]), probabilities[:, i])
        for i in shown
        if 0 < (truth == str(classes[i])).sum() < len(truth)
    ]


def roc_pr_png(truth, probabilities: np.ndarray, classes, positive: str | None = None) -> bytes:
    """ROC and precision-recall curves, one per class against the rest (the positive class for binary)."""
    figure = Figure(figsize=(10, 4))
    roc, pr = figure.subplots(1, 2)
    for label, is_label, score in _one_vs_rest(truth, probabilities, classes, positive):
        skm.RocCurveDisplay.from_predictions(is_label, score, name=label, ax=roc, plot_chance_level=False)
        skm.PrecisionRecallDisplay.from_predictions(is_label, score, name=label, ax=pr)
    roc.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    roc.set_title("ROC (holdout, one vs rest)")
    pr.set_title("Precision-recall (holdout, one vs rest)")
    return figure_png(figure)


def calibration_png(truth, probabilities: np.ndarray, classes, bins: int = 10) -> bytes:
    """Reliability diagram: how often the predicted class is right, against how sure the model was."""
    correct = np.asarray(truth).astype(str) == np.asarray(classes, dtype=str)[probabilities.argmax(axis=1)]
    confidence = probabilities.max(axis=1)
    figure = Figure(figsize=(5, 4.5))
    axes = figure.subplots()
    if correct.all() or not correct.any():
        # calibration_curve needs both outcomes; with one, each bin's accuracy is that outcome
        edges = np.linspace(0, 1, bins + 1)
        which = np.clip(np.digitize(confidence, edges) - 1, 0, bins - 1)
        centres = [confidence[which == b].mean() for b in np.unique(which)]
        observed, predicted = np.full(len(centres), float(correct.all())), np.asarray(centres)
    else:
        observed, predicted = calibration_curve(correct, confidence, n_bins=bins, strategy="uniform")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8, label="perfectly calibrated")
    axes.plot(predicted, observed, marker="o", label="model")
    axes.set(
        xlabel="confidence in the predicted class",
        ylabel="share predicted correctly",
        title="Calibration (holdout)",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    axes.legend(loc="lower right")
    return figure_png(figure)


def residuals_png(truth, predicted) -> bytes:
    truth, predicted = np.asarray(truth, dtype=float), np.asarray(predicted, dtype=float)
    if len(truth) > MAX_POINTS:
        keep = np.random.default_rng(0).choice(len(truth), MAX_POINTS, replace=False)
        truth, predicted = truth[keep], predicted[keep]
    figure = Figure(figsize=(10, 4))
    left, right = figure.subplots(1, 2)
    left.scatter(predicted, truth - predicted, s=6, alpha=0.5)
    left.axhline(0, color="black", linewidth=0.8)
    left.set(xlabel="predicted", ylabel="actual - predicted", title="Residuals (holdout)")
    right.scatter(truth, predicted, s=6, alpha=0.5)
    low, high = float(min(truth.min(), predicted.min())), float(max(truth.max(), predicted.max()))
    right.plot([low, high], [low, high], color="black", linewidth=0.8)
    right.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual (holdout)")
    return figure_png(figure)


def importance_png(importance: pd.DataFrame, metric: str) -> bytes:
    shown = importance.head(20).iloc[::-1]
    figure = Figure(figsize=(7, max(2.5, 0.35 * len(shown) + 1)))
    axes = figure.subplots()
    axes.barh(shown["feature"], shown["importance"], xerr=shown["std"], color="#4c72b0")
    axes.set(xlabel=f"drop in {metric} when shuffled", title="Permutation feature importance (holdout)")
    return figure_png(figure)
