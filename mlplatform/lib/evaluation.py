"""Holdout evaluation: metrics suited to the task, plots as PNG bytes, and a Markdown report."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn import metrics as skm
from sklearn.inspection import permutation_importance

from mlplatform.lib.spec import LOWER_IS_BETTER, ProjectSpec
from mlplatform.lib.training import TrainedModel

# Permutation importance predicts n_repeats times per column: a sample keeps it cheap at any data size.
IMPORTANCE_SAMPLE_ROWS = 5_000
IMPORTANCE_REPEATS = 5
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


class EvaluationError(ValueError):
    """The holdout cannot score this model; the message says which class or metric is the problem."""


@dataclass
class Evaluation:
    metrics: dict[str, float]
    primary_metric: str
    holdout_rows: int
    feature_importance: pd.DataFrame
    plots: dict[str, bytes] = field(default_factory=dict)

    @property
    def primary_value(self) -> float:
        return self.metrics[self.primary_metric]


def evaluate(model: TrainedModel, holdout: pd.DataFrame, spec: ProjectSpec) -> Evaluation:
    """Score the model on the holdout split, which neither the features nor the estimator have seen."""
    target = spec.problem.target
    inputs = list(model.pipeline.feature_names_in_)
    features, truth = holdout[inputs], holdout[target]
    if spec.problem.task == "classification":
        unseen = sorted(set(truth.astype(str)) - set(model.classes))
        if unseen:
            raise EvaluationError(
                f"target {target!r}: holdout class(es) {', '.join(map(repr, unseen))} never appear in the training "
                f"split (classes {list(model.classes)}); with a time_column, a class that only appears late does this"
            )
    predicted = model.pipeline.predict(features)
    if spec.problem.task == "classification":
        probabilities = model.pipeline.predict_proba(features)
        scores = classification_metrics(truth, predicted, probabilities, model.classes)
        plots = {"confusion_matrix": confusion_matrix_png(truth, predicted, model.classes)}
    else:
        scores = regression_metrics(truth, predicted)
        plots = {"residuals": residuals_png(truth, predicted)}
    if spec.problem.primary_metric not in scores:
        raise EvaluationError(
            f"problem.metric {spec.problem.primary_metric!r} is undefined on this holdout: it holds only "
            f"class(es) {sorted(set(truth.astype(str)))} of {list(model.classes)}"
        )
    importance = feature_importance(model, features, truth, spec)
    plots["feature_importance"] = importance_png(importance, spec.problem.primary_metric)
    return Evaluation(
        metrics=scores,
        primary_metric=spec.problem.primary_metric,
        holdout_rows=len(holdout),
        feature_importance=importance,
        plots=plots,
    )


def classification_metrics(truth, predicted, probabilities, classes) -> dict[str, float]:
    truth = np.asarray(truth).astype(str)
    predicted = np.asarray(predicted).astype(str)
    scores = {
        "accuracy": skm.accuracy_score(truth, predicted),
        "balanced_accuracy": skm.balanced_accuracy_score(truth, predicted),
        "f1_macro": skm.f1_score(truth, predicted, average="macro", zero_division=0),
        "f1_weighted": skm.f1_score(truth, predicted, average="weighted", zero_division=0),
        "precision_macro": skm.precision_score(truth, predicted, average="macro", zero_division=0),
        "recall_macro": skm.recall_score(truth, predicted, average="macro", zero_division=0),
        "log_loss": skm.log_loss(truth, probabilities, labels=list(classes)),
    }
    present = set(truth)
    if len(present) == len(classes) and len(classes) > 1:
        # ROC AUC needs every class in the holdout; a missing one leaves it undefined, so it is left out.
        if len(classes) == 2:
            scores["roc_auc"] = skm.roc_auc_score(truth == classes[1], probabilities[:, 1])
        else:
            scores["roc_auc"] = skm.roc_auc_score(
                truth, probabilities, multi_class="ovr", average="weighted", labels=list(classes)
            )
    return {name: float(value) for name, value in scores.items()}


def regression_metrics(truth, predicted) -> dict[str, float]:
    return {
        "rmse": float(skm.root_mean_squared_error(truth, predicted)),
        "mae": float(skm.mean_absolute_error(truth, predicted)),
        "r2": float(skm.r2_score(truth, predicted)),
    }


def feature_importance(
    model: TrainedModel, features: pd.DataFrame, truth: pd.Series, spec: ProjectSpec
) -> pd.DataFrame:
    """Permutation importance of each input column on (a sample of) the holdout, in the primary metric."""
    if len(features) > IMPORTANCE_SAMPLE_ROWS:
        sample = features.sample(IMPORTANCE_SAMPLE_ROWS, random_state=spec.split.seed).index
        features, truth = features.loc[sample], truth.loc[sample]
    scoring = scorer_for(spec.problem.primary_metric, list(model.classes))
    result = permutation_importance(
        model.pipeline,
        features,
        truth,
        scoring=scoring,
        n_repeats=IMPORTANCE_REPEATS,
        random_state=spec.split.seed,
    )
    table = pd.DataFrame(
        {"feature": features.columns, "importance": result.importances_mean, "std": result.importances_std}
    )
    return table.sort_values("importance", ascending=False, ignore_index=True)


def scorer_for(metric: str, classes: list[str] | None):
    """A scikit-learn scorer for the metric, higher is better (losses negated)."""
    if metric == "log_loss" and classes:  # the stock scorer infers labels from the sample, which may lack a class
        return skm.make_scorer(skm.log_loss, greater_is_better=False, response_method="predict_proba", labels=classes)
    return _SCORERS[metric]


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def confusion_matrix_png(truth, predicted, classes) -> bytes:
    labels = list(classes)
    matrix = skm.confusion_matrix(np.asarray(truth).astype(str), np.asarray(predicted).astype(str), labels=labels)
    size = max(4.0, 0.6 * len(labels) + 2)
    figure = Figure(figsize=(size, size))
    axes = figure.subplots()
    skm.ConfusionMatrixDisplay(matrix, display_labels=labels).plot(ax=axes, colorbar=False, cmap="Blues")
    axes.set_title("Confusion matrix (holdout)")
    return _png(figure)


def residuals_png(truth, predicted) -> bytes:
    truth, predicted = np.asarray(truth, dtype=float), np.asarray(predicted, dtype=float)
    if len(truth) > 20_000:
        keep = np.random.default_rng(0).choice(len(truth), 20_000, replace=False)
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
    return _png(figure)


def importance_png(importance: pd.DataFrame, metric: str) -> bytes:
    shown = importance.head(20).iloc[::-1]
    figure = Figure(figsize=(7, max(2.5, 0.35 * len(shown) + 1)))
    axes = figure.subplots()
    axes.barh(shown["feature"], shown["importance"], xerr=shown["std"], color="#4c72b0")
    axes.set(xlabel=f"drop in {metric} when shuffled", title="Permutation feature importance (holdout)")
    return _png(figure)


def image_markdown(name: str, png: bytes) -> str:
    """An image inlined as a data URI, so it shows in the Dagster UI's metadata without a file server."""
    return f"![{name}](data:image/png;base64,{base64.b64encode(png).decode()})"


def render_report(evaluation: Evaluation, spec: ProjectSpec, model: TrainedModel, image_links: dict[str, str]) -> str:
    """The evaluation report as Markdown; ``image_links`` maps plot names to how the report refers to them."""
    direction = "lower" if evaluation.primary_metric in LOWER_IS_BETTER else "higher"
    rows = "\n".join(f"| {name} | {value:.4f} |" for name, value in evaluation.metrics.items())
    importance = "\n".join(
        f"| {row.feature} | {row.importance:.4f} | {row.std:.4f} |"
        for row in evaluation.feature_importance.itertuples()
    )
    images = "\n\n".join(f"### {name.replace('_', ' ').capitalize()}\n\n{link}" for name, link in image_links.items())
    return f"""# Evaluation of {spec.name}: {model.estimator_name}

Task **{spec.problem.task}**, target `{spec.problem.target}`, {evaluation.holdout_rows} holdout rows.
Primary metric **{evaluation.primary_metric} = {evaluation.primary_value:.4f}** ({direction} is better).

| metric | holdout |
|---|---|
{rows}

## Feature importance (permutation, on the holdout)

| feature | importance | std |
|---|---|---|
{importance}

## Plots

{images}
"""
