"""Live performance: the champion's logged predictions joined to the labels that landed for them, scored by the
spec's primary metric and compared with the metric the champion scored on its holdout rows when it was trained.

Decay is how much worse the live metric is, in the metric's own units: holdout minus live for a score (f1,
accuracy, R²), live minus holdout for a loss (log loss, RMSE, MAE). Beyond ``monitoring.max_decay`` the model
should be retrained. Fewer than ``monitoring.min_labelled`` labelled predictions give no verdict: a metric on a
handful of rows says more about the rows than the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlplatform.lib.monitoring.labels import REQUEST_ID, REQUEST_ROW, Labels
from mlplatform.lib.serving.prediction_log import PROBABILITY_PREFIX
from mlplatform.lib.spec import LOWER_IS_BETTER, ProjectSpec
from mlplatform.lib.training import metrics


@dataclass(frozen=True)
class Performance:
    """One assessment of the champion; ``no_verdict`` says why there is none, when there is none."""

    champion: str | None
    metric: str
    no_verdict: str = ""
    live: float | None = None
    holdout: float | None = None
    labelled: int = 0  # the champion's predictions with a label
    predictions: int = 0  # the champion's predictions in the log
    unmatched_labels: int = 0  # labels naming no prediction of the champion (another model's, or none logged)
    max_decay: float | None = None
    problems: tuple[str, ...] = ()  # label files, or parts of them, left out: file, column, reason

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER

    @property
    def decay(self) -> float | None:
        """How much worse the live metric is than the holdout's, in the metric's units; negative when better."""
        if self.live is None or self.holdout is None:
            return None
        return self.live - self.holdout if self.lower_is_better else self.holdout - self.live

    @property
    def decayed(self) -> bool:
        decay = self.decay
        return decay is not None and self.max_decay is not None and decay > self.max_decay

    @property
    def coverage(self) -> float | None:
        """The share of the champion's logged predictions that have a label."""
        return self.labelled / self.predictions if self.predictions else None

    @property
    def verdict(self) -> str:
        """One line, also when there is no verdict ("no verdict: ...")."""
        if self.no_verdict:
            return f"no verdict: {self.no_verdict}"
        if self.decayed:
            return f"{self.retrain_reason} (worse by {self.decay:.4g}, more than max_decay {self.max_decay:g})"
        compared = (
            f"{self.metric} {self.live:.4g} live vs {self.holdout:.4g} holdout on {self.labelled} labelled predictions"
        )
        if self.max_decay is None:
            return f"{compared}; monitoring.max_decay is not set, so decay is reported only"
        return f"{compared}: within max_decay {self.max_decay:g}"

    @property
    def retrain_reason(self) -> str:
        if not self.decayed:
            return ""
        return (
            f"decay: {self.metric} {self.live:.4g} live vs {self.holdout:.4g} holdout "
            f"on {self.labelled} labelled predictions"
        )


def assess(
    spec: ProjectSpec,
    *,
    champion: str | None,
    holdout_metrics: dict[str, float],
    log: pd.DataFrame,
    labels: Labels | None,
) -> Performance:
    """The champion's live metric on its labelled predictions in ``log`` (the prediction log as read), against
    its holdout metric from the registry."""
    monitoring, metric = spec.monitoring, spec.problem.primary_metric
    known = {"champion": champion, "metric": metric, "max_decay": monitoring.max_decay}
    if labels is None:
        return Performance(**known, no_verdict="the spec names no monitoring.labels.uri to read labels from")
    known["problems"] = labels.problems
    if champion is None:
        return Performance(**known, no_verdict="there is no champion yet")
    served = _served_by(log, champion)
    joined, unmatched, problems = join(served, labels)
    known |= {
        "labelled": len(joined),
        "predictions": len(served),
        "unmatched_labels": unmatched,
        "problems": (*labels.problems, *problems),
        "holdout": holdout_metrics.get(metric),
    }
    if len(joined) < monitoring.min_labelled:
        few = f"{len(joined)} labelled prediction(s) of {champion}, fewer than monitoring.min_labelled"
        return Performance(**known, no_verdict=f"{few} ({monitoring.min_labelled}){_hint(served, labels, champion)}")
    live, why = score(spec, joined, _classes(served))
    if live is None:
        return Performance(**known, no_verdict=why)
    if known["holdout"] is None:
        return Performance(**known, live=live, no_verdict=f"{champion} has no holdout {metric} in the registry")
    return Performance(**known, live=live)


def _served_by(log: pd.DataFrame, champion: str) -> pd.DataFrame:
    if log.empty or "model_tag" not in log.columns:
        return pd.DataFrame(columns=["model_tag", REQUEST_ID, REQUEST_ROW, "prediction"])
    return log.loc[log["model_tag"] == champion].reset_index(drop=True)


def join(served: pd.DataFrame, labels: Labels) -> tuple[pd.DataFrame, int, list[str]]:
    """The served predictions that have a label (``truth`` beside each), how many labels named no served
    prediction, and the labels left out as ambiguous (file and reason). A later label for the same prediction
    replaces an earlier one; by an id column, every prediction made for that id takes its label."""
    frame, problems = labels.frame, []
    if labels.by == REQUEST_ID:
        frame, problems = _rows_named(frame, served)
        keys = ["key", REQUEST_ROW]
        # a log written before rows kept their position has none: its request ids were never answered either
        positions = served[REQUEST_ROW] if REQUEST_ROW in served.columns else pd.Series(pd.NA, index=served.index)
        predictions = served.assign(key=_text(served[REQUEST_ID]), **{REQUEST_ROW: positions.astype("Int64")})
    elif labels.by in served.columns:
        keys = ["key"]
        predictions = served.assign(key=_text(served[labels.by]))
    else:  # a model stored before requests could carry the id column, or a log without one
        return served.iloc[:0].assign(truth=None), len(frame.drop_duplicates("key")), problems
    frame = frame.drop_duplicates(keys, keep="last")[[*keys, "truth"]]
    joined = predictions.merge(frame, on=keys, how="inner")
    matched = frame.merge(predictions[keys].drop_duplicates(), on=keys, how="left", indicator=True)
    return joined, int((matched["_merge"] == "left_only").sum()), problems


def _rows_named(frame: pd.DataFrame, served: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Labels by request id, each given its row: one without ``request_row`` is for a single-row request (row
    0); for a batch request it is ambiguous, and left out, with its file named."""
    sizes = served.groupby(_text(served[REQUEST_ID])).size() if len(served) else pd.Series(dtype=int)
    missing = frame[REQUEST_ROW].isna()
    rows = frame["key"].map(sizes)
    ambiguous = missing & (rows > 1)
    problems = [
        f"{file}: {len(group)} label(s) for batch requests give no {REQUEST_ROW} (request {group['key'].iloc[0]} "
        f"answered {int(rows[group.index[0]])} rows): add each row's position in its request, from 0"
        for file, group in frame[ambiguous].groupby("file", sort=False)
    ]
    frame = frame.loc[~ambiguous].copy()
    frame.loc[frame[REQUEST_ROW].isna(), REQUEST_ROW] = 0
    return frame, problems


def _text(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), None)


def _classes(served: pd.DataFrame) -> list[str]:
    """The classes the champion logged probabilities for, in the model's order."""
    columns = [c for c in served.columns if c.startswith(PROBABILITY_PREFIX) and served[c].notna().any()]
    return [c.removeprefix(PROBABILITY_PREFIX) for c in columns]


def score(spec: ProjectSpec, joined: pd.DataFrame, classes: list[str]) -> tuple[float | None, str]:
    """The primary metric of the labelled predictions, or None and why it cannot be computed."""
    metric = spec.problem.primary_metric
    if spec.problem.task == "regression":
        truth, predicted = joined["truth"].astype(float).to_numpy(), joined["prediction"].astype(float).to_numpy()
        return metrics.regression_metrics(truth, predicted)[metric], ""
    truth, predicted = joined["truth"].astype(str).to_numpy(), joined["prediction"].astype(str).to_numpy()
    by_label = metrics.label_metrics(truth, predicted)
    if metric in by_label:
        return by_label[metric], ""
    # log_loss and roc_auc need the class probabilities, and are defined only for classes the model knows
    if not classes:
        return None, f"{metric} needs class probabilities, and the champion logged none"
    known = np.isin(truth, classes)
    if not known.any():
        return None, f"{metric}: no label is a class the model knows ({', '.join(classes)})"
    probabilities = joined.loc[known, [PROBABILITY_PREFIX + c for c in classes]].to_numpy(dtype=float)
    positive = metrics.positive_label(classes, spec)
    scores = metrics.classification_metrics(truth[known], predicted[known], probabilities, classes, positive)
    if metric not in scores:
        seen = ", ".join(sorted(set(truth[known])))
        return None, f"{metric} needs every class among the labelled predictions, which hold only {seen}"
    return scores[metric], ""


def _hint(served: pd.DataFrame, labels: Labels, champion: str) -> str:
    if served.empty:
        return f"; no prediction of {champion} is logged yet"
    if labels.by != REQUEST_ID and (labels.by not in served.columns or served[labels.by].isna().all()):
        return (
            f"; no request to {champion} carried {labels.by!r}: send it with each request, "
            "or join by request_id (monitoring.labels.id_column: request_id)"
        )
    if labels.frame.empty:
        return f"; no label has landed in {labels.files} label file(s)"
    return ""
