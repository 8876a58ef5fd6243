"""Holdout evaluation: metrics suited to the task, calibration, metrics per slice, every candidate compared,
permutation importance, plots as PNG bytes, and a Markdown report."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pandas.api import types
from sklearn.compose import ColumnTransformer
from sklearn.inspection import permutation_importance

from mlplatform.lib.evaluation import plots
from mlplatform.lib.spec import LOWER_IS_BETTER, ProjectSpec
from mlplatform.lib.training.metrics import (
    CALIBRATION_BINS,
    MetricError,
    classification_metrics,
    natural,
    positive_label,
    regression_metrics,
    scorer_for,
)
from mlplatform.lib.training.training import TrainedModel, ship

if TYPE_CHECKING:
    from mlplatform.lib.quality.leakage import LeakageScan
    from mlplatform.lib.training.candidates import TunedCandidate

# Permutation importance predicts n_repeats times per column: a sample keeps it cheap at any data size.
IMPORTANCE_SAMPLE_ROWS = 5_000
IMPORTANCE_REPEATS = 5


class EvaluationError(MetricError):
    """The holdout cannot score this model; the message says which class, column or metric is the problem."""


@dataclass
class Evaluation:
    metrics: dict[str, float]
    primary_metric: str
    holdout_rows: int
    feature_importance: pd.DataFrame
    plots: dict[str, bytes] = field(default_factory=dict)
    slices: pd.DataFrame = field(default_factory=pd.DataFrame)  # column, value, rows, metrics per slice
    candidates: pd.DataFrame = field(default_factory=pd.DataFrame)  # every tuned candidate, side by side
    leakage: LeakageScan | None = None  # each input column alone against the target, on the training split

    @property
    def primary_value(self) -> float:
        return self.metrics[self.primary_metric]


@dataclass(frozen=True)
class Predictions:
    features: pd.DataFrame
    truth: pd.Series
    predicted: np.ndarray
    probabilities: np.ndarray | None  # classifiers only, columns in the order of model.classes


def predict(model: TrainedModel, holdout: pd.DataFrame, spec: ProjectSpec) -> Predictions:
    target = spec.problem.target
    inputs = list(model.pipeline.feature_names_in_)
    missing = [column for column in [*inputs, target] if column not in holdout.columns]
    if missing:
        raise EvaluationError(f"the holdout lacks column(s) {missing} that model {model.estimator_name} needs")
    features, truth = holdout[inputs], holdout[target]
    if spec.problem.task == "classification":
        unseen = sorted(set(truth.astype(str)) - set(model.classes))
        if unseen:
            raise EvaluationError(
                f"target {target!r}: holdout class(es) {', '.join(map(repr, unseen))} never appear in the training "
                f"split (classes {list(model.classes)}); with a time_column, a class that only appears late does this"
            )
        return Predictions(features, truth, model.pipeline.predict(features), model.pipeline.predict_proba(features))
    return Predictions(features, truth, model.pipeline.predict(features), None)


def metrics_of(result: Predictions, model: TrainedModel, spec: ProjectSpec) -> dict[str, float]:
    if result.probabilities is not None:
        positive = positive_label(model.classes, spec)
        scores = classification_metrics(result.truth, result.predicted, result.probabilities, model.classes, positive)
    else:
        scores = regression_metrics(result.truth, result.predicted)
    if spec.problem.primary_metric not in scores:
        raise EvaluationError(
            f"problem.metric {spec.problem.primary_metric!r} is undefined on this holdout: it holds only "
            f"class(es) {sorted(set(result.truth.astype(str)))} of {list(model.classes)}"
        )
    return scores


def score(model: TrainedModel, holdout: pd.DataFrame, spec: ProjectSpec) -> dict[str, float]:
    """The holdout metrics alone: what the promotion gate compares champion and challenger on."""
    return metrics_of(predict(model, holdout, spec), model, spec)


def evaluate(
    model: TrainedModel,
    holdout: pd.DataFrame,
    spec: ProjectSpec,
    tuned: dict[str, TunedCandidate] | None = None,
    feature_pipeline: ColumnTransformer | None = None,
) -> Evaluation:
    """Score the model on the holdout split, which neither the features nor the estimator have seen; with
    ``tuned`` (and the feature pipeline they share), every candidate is scored beside it."""
    result = predict(model, holdout, spec)
    scores = metrics_of(result, model, spec)
    if result.probabilities is not None:
        figures = {
            "confusion_matrix": plots.confusion_matrix_png(result.truth, result.predicted, model.classes),
            "roc_and_precision_recall": plots.roc_pr_png(
                result.truth, result.probabilities, model.classes, positive_label(model.classes, spec)
            ),
            "calibration": plots.calibration_png(result.truth, result.probabilities, model.classes, CALIBRATION_BINS),
        }
    else:
        figures = {"residuals": plots.residuals_png(result.truth, result.predicted)}
    importance = feature_importance(model, result.features, result.truth, spec)
    figures["feature_importance"] = plots.importance_png(importance, spec.problem.primary_metric)
    comparison = pd.DataFrame()
    if tuned:
        if feature_pipeline is None:
            raise ValueError("comparing candidates needs the feature pipeline they were tuned on")
        comparison = compare(tuned, feature_pipeline, holdout, spec, selected=model.candidate)
    return Evaluation(
        metrics=scores,
        primary_metric=spec.problem.primary_metric,
        holdout_rows=len(holdout),
        feature_importance=importance,
        plots=figures,
        slices=slice_metrics(result, holdout, model, spec),
        candidates=comparison,
    )


def slice_metrics(result: Predictions, holdout: pd.DataFrame, model: TrainedModel, spec: ProjectSpec) -> pd.DataFrame:
    """Holdout metrics per value of each ``evaluation.slice_columns`` column (numbers in quartiles; the most
    frequent ``max_slices`` values, the rest as "(other)"): where the model is weaker than its average."""
    rows = []
    secondary = "accuracy" if spec.problem.task == "classification" else "mae"
    for column in spec.evaluation.slice_columns:
        if column not in holdout.columns:
            raise EvaluationError(
                f"evaluation.slice_columns: column {column!r} is not in the data (columns: {list(holdout.columns)})"
            )
        groups = _slice_labels(holdout[column], spec.evaluation.max_slices)
        for value in groups.unique():
            mask = (groups == value).to_numpy()
            part = Predictions(
                result.features[mask],
                result.truth[mask],
                result.predicted[mask],
                None if result.probabilities is None else result.probabilities[mask],
            )
            with warnings.catch_warnings():  # one-class or one-row slices leave some metrics undefined
                warnings.simplefilter("ignore")
                if part.probabilities is not None:
                    positive = positive_label(model.classes, spec)
                    scores = classification_metrics(
                        part.truth, part.predicted, part.probabilities, model.classes, positive
                    )
                else:
                    scores = regression_metrics(part.truth, part.predicted) if mask.sum() > 1 else {}
            rows.append(
                {
                    "column": column,
                    "value": str(value),
                    "rows": int(mask.sum()),
                    spec.problem.primary_metric: scores.get(spec.problem.primary_metric, np.nan),
                    secondary: scores.get(secondary, np.nan),
                }
            )
    return pd.DataFrame(rows)


def _slice_labels(values: pd.Series, max_slices: int) -> pd.Series:
    if types.is_numeric_dtype(values) and not types.is_bool_dtype(values) and values.nunique() > max_slices:
        labels = pd.qcut(values, q=4, duplicates="drop").astype(str)
    else:
        labels = values.astype("string").astype(object)
        frequent = labels.value_counts().index[:max_slices]
        labels = labels.where(labels.isin(frequent) | labels.isna(), "(other)")
    return labels.where(values.notna(), "(missing)").reset_index(drop=True)


def compare(
    tuned: dict[str, TunedCandidate],
    feature_pipeline: ColumnTransformer,
    holdout: pd.DataFrame,
    spec: ProjectSpec,
    selected: str,
) -> pd.DataFrame:
    """Every candidate side by side: its cross-validated score (what chose the winner) and, for information
    only, its holdout score."""
    metric = spec.problem.primary_metric
    rows = []
    for name, candidate in tuned.items():
        shipped = ship(candidate, feature_pipeline, 0)
        rows.append(
            {
                "candidate": name,
                "estimator": shipped.estimator_name,
                f"cv_{metric}": natural(metric, candidate.cv_score),
                "cv_std": candidate.cv_std,
                f"holdout_{metric}": score(shipped, holdout, spec)[metric],
                "trials": _trials(candidate),
                "search_seconds": round(candidate.seconds, 2),
                "reproducible": "no: time cap fired" if candidate.stopped_by_time_cap else "yes",
                "selected": name == selected,
                "parameters": ", ".join(f"{k}={_short(v)}" for k, v in candidate.best_params.items()),
            }
        )
    return pd.DataFrame(rows)


def _trials(candidate: TunedCandidate) -> str:
    asked = candidate.trials_asked
    return (
        f"{candidate.trials} of {asked}" if asked is not None and asked != candidate.trials else str(candidate.trials)
    )


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


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


def _positive_note(model: TrainedModel, spec: ProjectSpec) -> str:
    positive = positive_label(model.classes, spec)
    if positive is None:
        return ""
    chosen = spec.problem.positive_class is not None
    source = "`problem.positive_class`" if chosen else "the alphabetically second label; set `problem.positive_class`"
    metrics = "precision, recall, f1, ROC AUC, average precision and the Brier score"
    return f"\nPositive class for {metrics}: **{positive}** ({source})."


def _table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, floatfmt=".4f") if not frame.empty else "_(none)_"


def render_report(evaluation: Evaluation, spec: ProjectSpec, model: TrainedModel, image_links: dict[str, str]) -> str:
    """The evaluation report as Markdown; ``image_links`` maps plot names to how the report refers to them."""
    direction = "lower" if evaluation.primary_metric in LOWER_IS_BETTER else "higher"
    rows = "\n".join(f"| {name} | {value:.4f} |" for name, value in evaluation.metrics.items())
    importance = "\n".join(
        f"| {row.feature} | {row.importance:.4f} | {row.std:.4f} |"
        for row in evaluation.feature_importance.itertuples()
    )
    images = "\n\n".join(f"### {name.replace('_', ' ').capitalize()}\n\n{link}" for name, link in image_links.items())
    chosen = f" (candidate `{model.candidate}`)" if model.candidate else ""
    positive = _positive_note(model, spec)
    sections = [
        f"""# Evaluation of {spec.name}: {model.estimator_name}{chosen}

Task **{spec.problem.task}**, target `{spec.problem.target}`, {evaluation.holdout_rows} holdout rows.
Primary metric **{evaluation.primary_metric} = {evaluation.primary_value:.4f}** ({direction} is better).{positive}

| metric | holdout |
|---|---|
{rows}"""
    ]
    if evaluation.leakage is not None and evaluation.leakage.leaks:
        sections.append(_leakage_section(evaluation.leakage, spec))
    if not evaluation.candidates.empty:
        capped = evaluation.candidates.loc[evaluation.candidates["reproducible"] != "yes", "candidate"].tolist()
        warning = (
            f"\n\n**Not reproducible:** the time cap (`training.candidates.<name>.seconds`) stopped the search of "
            f"{', '.join(f'`{name}`' for name in capped)} before its budget of trials; how many trials it completed "
            "depends on the machine's speed and load, so a retrain of the same data and spec may choose another model."
            if capped
            else ""
        )
        sections.append(
            "## Candidates\n\nChosen by cross-validated score on the training split; the holdout column is for "
            f"information only.{warning}\n\n{_table(evaluation.candidates)}"
        )
    if not evaluation.slices.empty:
        sections.append(f"## Metrics per slice\n\n{_table(evaluation.slices)}")
    sections.append(
        f"""## Feature importance (permutation, on the holdout)

| feature | importance | std |
|---|---|---|
{importance}"""
    )
    sections.append(f"## Plots\n\n{images}")
    return "\n\n".join(sections) + "\n"


def _leakage_section(scan: LeakageScan, spec: ProjectSpec) -> str:
    rows = "\n".join(f"| `{leak.feature}` | {leak.score:.4f} |" for leak in scan.leaks)
    return f"""## Leakage warning

On its own, each feature below predicts `{spec.problem.target}` almost perfectly: cross-validated {scan.metric}
of at least {scan.threshold} on {scan.rows} training rows, with no other input. The holdout metrics above are then
likely too good to hold on new data. Check that each is known before the target is: not computed from it, not
recorded after the outcome, not the row number of a file sorted by it. If it is a leak, list it in
`problem.drop_columns`.

| feature | {scan.metric} alone |
|---|---|
{rows}"""
