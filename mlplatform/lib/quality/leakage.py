"""A warning when one input column alone predicts the target almost perfectly: the sign of a leak (a copy or
a function of the target, a value only known after the outcome, a row position in a file sorted by the
target) far more often than of an easy problem.

Each input column is scored on its own by cross-validation on a seeded sample of the training split: a
number by a shallow decision tree, a category by the mean target (regression) or the most frequent class
(classification) of its value in the other folds. The score is out of fold, so a column that merely
identifies rows (an id, a free-text field) scores nothing, while a column that encodes the target scores
close to perfect.

A regression target is scored by its ranks (``rank_r2``: the R² of the predicted against the true
percentile of each row): on a heavy-tailed target (prices) the plain R² of even a perfect copy swung from
0.87 to 0.99 with the few extreme values a sample of a few hundred rows happened to draw, while the R² of
ranks stayed above 0.999.

Thresholds: ``rank_r2`` >= 0.98 for regression (the column alone orders 98% of the target's variation on
rows it was not fitted on) and balanced accuracy >= 0.98 for classification (every class, the rare ones
too, told apart 98 times in 100). Honest single features stay well below: on the bundled penguins the best
one (island) scores 0.78; on diamond-like data (a price log-normal in the carat) the carat scores 0.87. A
copy of the target, or the row number of a file sorted by it, scores 0.999 from 200 rows on (0.99 at 40).
The tree's depth (64 steps) bounds what a noisy honest feature can fit. The result is a warning, never a
block: a data scientist decides.

Its cost grows with the input columns, not the rows: the sample is drawn before anything is copied, so a
training split of a million rows costs what 3,000 do (bench/README.md, "Measured without a script of their
own").
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api import types
from sklearn import metrics
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from mlplatform.lib.spec import ProjectSpec

SAMPLE_ROWS = 3_000
FOLDS = 3
TREE_DEPTH = 6
MIN_ROWS = 30  # fewer rows say too little either way
METRIC = {"regression": "rank_r2", "classification": "balanced_accuracy"}
THRESHOLD = {"regression": 0.98, "classification": 0.98}


@dataclass(frozen=True)
class Leak:
    feature: str
    metric: str
    score: float  # cross-validated, of this feature alone
    threshold: float


@dataclass(frozen=True)
class LeakageScan:
    """Every input column's score alone, best first; ``leaks`` are those at or above the threshold."""

    metric: str
    threshold: float
    scores: dict[str, float]
    rows: int  # of the sample the columns were scored on; 0 when there were too few to score
    seconds: float

    @property
    def leaks(self) -> list[Leak]:
        return [
            Leak(feature, self.metric, score, self.threshold)
            for feature, score in self.scores.items()
            if score >= self.threshold
        ]

    def as_dict(self, top: int = 5) -> dict:
        return {
            "metric": self.metric,
            "threshold": self.threshold,
            "rows": self.rows,
            "folds": FOLDS,
            "seconds": round(self.seconds, 3),
            "leaks": [leak.feature for leak in self.leaks],
            "strongest": {feature: round(score, 4) for feature, score in list(self.scores.items())[:top]},
        }


def scan(training: pd.DataFrame, spec: ProjectSpec, columns: list[str], sample_rows: int = SAMPLE_ROWS) -> LeakageScan:
    """Score each of ``columns`` alone at predicting the target on (a seeded sample of) the training split."""
    started = time.perf_counter()
    task, target = spec.problem.task, spec.problem.target
    metric, threshold = METRIC[task], THRESHOLD[task]
    rows = np.flatnonzero(training[target].notna().to_numpy())
    if len(rows) > sample_rows:  # chosen before any copy: the training split may hold millions of rows
        rows = np.sort(np.random.default_rng(spec.split.seed).choice(rows, size=sample_rows, replace=False))
    labelled = training.iloc[rows]
    values = labelled[target]
    # A number by its rank: a few extreme values of a heavy-tailed target must neither hide a leak nor make one.
    truth = values.astype(str) if task == "classification" else values.astype(float).rank(pct=True)
    folds = _folds(truth, task, spec.split.seed)
    if folds is None:
        return LeakageScan(metric, threshold, {}, 0, time.perf_counter() - started)
    scores = {str(column): _score_alone(labelled[column], truth, folds, task) for column in columns}
    ranked = dict(sorted(scores.items(), key=lambda item: item[1], reverse=True))
    return LeakageScan(metric, threshold, ranked, len(labelled), time.perf_counter() - started)


def _folds(truth: pd.Series, task: str, seed: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Shuffled folds (the rows may arrive sorted by the target), stratified when every class allows it;
    None when the target leaves nothing to predict."""
    if len(truth) < MIN_ROWS or truth.nunique() < 2:
        return None
    if task == "classification" and truth.value_counts().min() >= FOLDS:
        splitter = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    else:
        splitter = KFold(FOLDS, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(truth)), truth))


def _score_alone(values: pd.Series, truth: pd.Series, folds: list, task: str) -> float:
    predicted = np.empty(len(truth), dtype=object if task == "classification" else float)
    numeric = types.is_numeric_dtype(values) and not types.is_bool_dtype(values)
    if numeric:
        # The tree handles missing values itself; an infinity it cannot split on becomes one.
        column = values.astype(float).replace([np.inf, -np.inf], np.nan).to_numpy().reshape(-1, 1)
    else:
        column = values.astype("string").fillna("(missing)").to_numpy()
    answers = truth.to_numpy()
    for fit_rows, test_rows in folds:
        if numeric:
            tree = DecisionTreeClassifier if task == "classification" else DecisionTreeRegressor
            model = tree(max_depth=TREE_DEPTH, random_state=0)
            predicted[test_rows] = model.fit(column[fit_rows], answers[fit_rows]).predict(column[test_rows])
        else:
            predicted[test_rows] = _lookup(column[fit_rows], answers[fit_rows], column[test_rows], task)
    if task == "classification":
        return float(metrics.balanced_accuracy_score(answers.astype(str), predicted.astype(str)))
    return float(metrics.r2_score(answers, predicted))


def _lookup(keys: np.ndarray, answers: np.ndarray, asked: np.ndarray, task: str) -> np.ndarray:
    """Each asked value's mean target (most frequent class) among the fitted rows; the overall one if unseen."""
    seen = pd.Series(answers, index=keys)
    if task == "classification":
        table = pd.crosstab(keys, answers).idxmax(axis=1)
        fallback = seen.value_counts().index[0]
    else:
        table, fallback = seen.groupby(level=0).mean(), seen.mean()
    return pd.Series(asked).map(table).fillna(fallback).to_numpy()
