"""The gate between the feature pipeline and training: are the features a model will be fed present and finite,
and does a classification target have at least two classes to learn? It also warns, without blocking, of an
input column that alone predicts the target almost perfectly (mlplatform.lib.quality.leakage).

Transforming every row again only to look at it costs more than the rest of the check (bench/README.md, quality.py
results: nearly all in the categorical branch, whose one-hot output is 0 or 1 anyway). So the transformed
features are checked on a seeded sample of each split, which catches what goes wrong for every row (a fitted
statistic that is not a number, a column that comes out empty), and the full data is checked where one row can
break a model: each numeric model input must be finite (missing values are imputed, but an infinity passes
through scaling), and the training target must have no missing value and two classes. When the sample fails,
every row is transformed and checked, so the report counts what is wrong in the whole data.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer

from mlplatform.lib.features.features import feature_columns
from mlplatform.lib.quality import builders, gx_suites, leakage, outcomes
from mlplatform.lib.spec import ProjectSpec

SAMPLE_ROWS = 20_000  # per split


def validate_features(
    pipeline: ColumnTransformer,
    training: pd.DataFrame,
    holdout: pd.DataFrame,
    spec: ProjectSpec,
    docs_dir: Path | None = None,
    sample_rows: int = SAMPLE_ROWS,
) -> outcomes.QualityReport:
    """One report for the three suites: transformed features (a sample, or every row if the sample fails),
    numeric model inputs, training target; and the leakage scan's warnings. ``extra["features_checked_rows"]``
    says how many rows the first saw, ``extra["leakage"]`` what the scan found."""
    started = time.perf_counter()
    target = spec.problem.target
    rules = builders.feature_rules([str(name) for name in pipeline.get_feature_names_out()])
    sampled = transform(pipeline, [sample(training, sample_rows), sample(holdout, sample_rows)])
    transformed = gx_suites.validate(sampled, rules, "features")
    if not transformed.passed:
        transformed = gx_suites.validate(transform(pipeline, [training, holdout]), rules, "features", docs_dir)
    numeric, _ = feature_columns(training[list(pipeline.feature_names_in_)], spec)
    inputs = pd.concat([training[numeric], holdout[numeric]], ignore_index=True)
    reports = [
        transformed,
        gx_suites.validate(inputs, builders.finite_rules(numeric), "feature_inputs"),
        gx_suites.validate(
            training[[target]], builders.feature_rules([], target, spec.problem.task), "training_target"
        ),
    ]
    leaks = leakage.scan(training, spec, list(pipeline.feature_names_in_))
    return outcomes.QualityReport(
        suite="features",
        rows=len(training) + len(holdout),
        outcomes=[outcome for report in reports for outcome in report.outcomes] + leakage_outcomes(leaks),
        seconds=time.perf_counter() - started,
        docs_index=transformed.docs_index,
        extra={"features_checked_rows": transformed.rows, "leakage": leaks.as_dict()},
    )


def leakage_outcomes(scan: leakage.LeakageScan) -> list[outcomes.Outcome]:
    """One warning per input column that alone predicts the target at or above the threshold, its score shown."""
    found = []
    for feature, score in scan.scores.items():
        rule = builders.Rule(
            "single_feature_does_not_predict_the_target",
            {"column": feature, "metric": scan.metric, "below": scan.threshold},
            "warn",
            f"leakage scan ({scan.rows} training rows, {leakage.FOLDS}-fold)",
        )
        shown = (f"{scan.metric} {score:.4f} alone",)
        found.append(outcomes.Outcome(rule, score < scan.threshold, observed=round(score, 4), sample=shown))
    return found


def sample(frame: pd.DataFrame, rows: int = SAMPLE_ROWS) -> pd.DataFrame:
    """``rows`` rows chosen at random with a fixed seed, in their original order; the whole frame if smaller."""
    if len(frame) <= rows:
        return frame
    chosen = np.random.default_rng(0).choice(len(frame), size=rows, replace=False)
    return frame.iloc[np.sort(chosen)]


def transform(pipeline: ColumnTransformer, parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The parts' features, one below the other, named as the pipeline names them."""
    inputs, names = list(pipeline.feature_names_in_), [str(name) for name in pipeline.get_feature_names_out()]
    return pd.DataFrame(np.vstack([pipeline.transform(part[inputs]) for part in parts]), columns=names)
