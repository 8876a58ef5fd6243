"""Drift of served inputs and predictions from a model version's reference sample, on numpy and scipy.

Every model input and the prediction is compared on its own (the prediction as a class mix for a classifier,
as a number for a regressor):

- **numbers**: the population stability index (PSI) over bins cut at the reference's deciles (plus a bin below
  its minimum, one above its maximum and one for missing values), and the Kolmogorov-Smirnov distance D
  between the present values, computed exactly (the same value as ``scipy.stats.ks_2samp``, from sorted arrays
  without concatenating them), with its p-value; the bins also give a chi-square test, so a change in the
  share of missing values is tested too. The column's p-value is the smaller of the two, doubled (Bonferroni
  within the column).
- **categories**: PSI and the chi-square test over the reference's categories, plus one bin for values the
  reference never held and one for missing values, and Cramér's V as the effect size. V is the table's V with
  the two samples weighted equally (``sqrt(½ Σ (p - q)² / (p + q))`` over the two sets of shares): the usual V
  of a 5,000-row reference against a million served rows would shrink with the sizes' imbalance, not the shift.

A column **drifts** when an effect size reaches its threshold (``psi``; ``ks`` for numbers, ``cramers_v`` for
categories) *and* its shift is significant once the false discovery rate across all the columns compared is
held at ``fdr`` (Benjamini-Hochberg): at 100,000 rows every shift is significant, at 50 none is, so neither a
p-value nor an effect size decides alone. Retraining is asked for when more than ``max_drifted_share`` of the
inputs drifted, or any column that ``features`` names (the prediction's column is ``prediction``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from mlplatform.lib.monitoring import statistics
from mlplatform.lib.monitoring.reference import PREDICTION
from mlplatform.lib.spec import DriftSettings

Kind = Literal["number", "category"]
Role = Literal["input", "prediction"]
MISSING, UNSEEN = "(missing)", "(unseen)"


class DriftError(ValueError):
    """The data cannot be compared as asked; the message names the column or the setting."""


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    role: Role


def columns_of(schema: dict) -> list[Column]:
    """The columns a model's drift report compares: its inputs, as its schema types them, and its prediction."""
    inputs = [
        Column(column["name"], "number" if column["kind"] == "number" else "category", "input")
        for column in schema["columns"]
    ]
    prediction_kind: Kind = "category" if schema["task"] == "classification" else "number"
    return [*inputs, Column(PREDICTION, prediction_kind, "prediction")]


@dataclass(frozen=True)
class ColumnDrift:
    """One column compared: its shares per bin on each side, the statistics, and the verdict with its reason."""

    name: str
    kind: Kind
    role: Role
    bins: tuple[str, ...]
    reference_shares: tuple[float, ...]
    current_shares: tuple[float, ...]
    reference_missing: float
    current_missing: float
    psi: float
    p_value: float
    ks: float | None = None  # numbers with present values on both sides
    cramers_v: float | None = None  # categories
    unseen: float | None = None  # categories: the share of served values the reference never held
    q_value: float = math.nan  # the p-value adjusted for the false discovery rate across the columns
    drifted: bool = False
    why: str = ""

    def effects(self, settings: DriftSettings) -> dict[str, tuple[float, float]]:
        """Each effect size measured, with its threshold."""
        found = {"psi": (self.psi, settings.psi)}
        if self.ks is not None:
            found["ks"] = (self.ks, settings.ks)
        if self.cramers_v is not None:
            found["cramers_v"] = (self.cramers_v, settings.cramers_v)
        return found


@dataclass(frozen=True)
class DriftReport:
    """The served rows of a window compared with a model version's reference sample."""

    model_tag: str
    rows: int
    reference_rows: int
    columns: list[ColumnDrift] = field(default_factory=list)
    no_verdict: str = ""  # why nothing was judged (too few rows); empty when the columns were compared
    retrain: bool = False
    reason: str = ""

    @property
    def inputs(self) -> list[ColumnDrift]:
        return [column for column in self.columns if column.role == "input"]

    @property
    def drifted(self) -> list[ColumnDrift]:
        return [column for column in self.columns if column.drifted]

    @property
    def drifted_share(self) -> float:
        inputs = self.inputs
        return sum(column.drifted for column in inputs) / len(inputs) if inputs else 0.0

    def table(self) -> pd.DataFrame:
        """One row per column, for people: the statistics rounded, the verdict and why."""
        return pd.DataFrame(
            [
                {
                    "column": column.name,
                    "role": column.role,
                    "kind": column.kind,
                    "missing": f"{column.reference_missing:.1%} → {column.current_missing:.1%}",
                    "psi": round(column.psi, 4),
                    "ks": _rounded(column.ks),
                    "cramers_v": _rounded(column.cramers_v),
                    "unseen": "" if column.unseen is None else f"{column.unseen:.1%}",
                    "p": f"{column.p_value:.2g}",
                    "q": f"{column.q_value:.2g}",
                    "drifted": "yes" if column.drifted else "",
                    "why": column.why,
                }
                for column in self.columns
            ]
        )


def _rounded(value: float | None) -> float | str:
    return "" if value is None else round(value, 4)


def compare(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[Column], settings: DriftSettings, model_tag: str
) -> DriftReport:
    """Compare ``current`` (served rows) with ``reference`` (the model version's sample) column by column."""
    names = [column.name for column in columns]
    unknown = [name for name in settings.features if name not in names]
    if unknown:
        raise DriftError(
            f"monitoring.drift.features names {unknown}, not an input of {model_tag} or {PREDICTION!r} "
            f"(compared: {names})"
        )
    absent = [name for name in names if name not in reference.columns]
    if absent:
        raise DriftError(f"the reference sample of {model_tag} lacks column(s) {absent}")
    if len(current) < settings.min_rows:
        return DriftReport(
            model_tag,
            len(current),
            len(reference),
            no_verdict=f"{len(current)} served row(s) of {model_tag} in the window, fewer than "
            f"monitoring.drift.min_rows ({settings.min_rows}): no verdict",
        )
    absent = [name for name in names if name not in current.columns]
    if absent:
        raise DriftError(f"the served rows of {model_tag} lack column(s) {absent}")
    if reference.empty:
        raise DriftError(f"the reference sample of {model_tag} has no rows")
    measured = [_measure(column, reference[column.name], current[column.name]) for column in columns]
    q_values = stats.false_discovery_control([column.p_value for column in measured], method="bh")
    judged = [_judge(column, float(q), settings) for column, q in zip(measured, q_values, strict=True)]
    report = DriftReport(model_tag, len(current), len(reference), judged)
    retrain, reason = _decide(report, settings)
    return replace(report, retrain=retrain, reason=reason)


def _measure(column: Column, reference: pd.Series, current: pd.Series) -> ColumnDrift:
    if column.kind == "number":
        return _numbers(column, _as_numbers(reference, column.name), _as_numbers(current, column.name))
    return _categories(column, reference, current)


def _as_numbers(series: pd.Series, name: str) -> np.ndarray:
    try:
        return series.to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise DriftError(f"column {name!r} should hold numbers ({series.dtype}): {exc}") from None


def _numbers(column: Column, reference: np.ndarray, current: np.ndarray) -> ColumnDrift:
    reference_present = np.sort(reference[~np.isnan(reference)])
    current_present = np.sort(current[~np.isnan(current)])
    reference_missing, current_missing = len(reference) - len(reference_present), len(current) - len(current_present)
    edges = statistics.decile_edges(reference_present)
    reference_counts = np.append(statistics.binned(reference_present, edges), reference_missing)
    current_counts = np.append(statistics.binned(current_present, edges), current_missing)
    p_binned = statistics.chi_square_p(reference_counts, current_counts)
    ks = p_value = None
    if len(reference_present) and len(current_present):
        ks, p_ks = statistics.ks_test(reference_present, current_present)
        p_value = min(1.0, 2 * min(p_ks, p_binned))
    return ColumnDrift(
        name=column.name,
        kind="number",
        role=column.role,
        bins=(*statistics.bin_labels(edges), MISSING),
        reference_shares=tuple(statistics.shares(reference_counts)),
        current_shares=tuple(statistics.shares(current_counts)),
        reference_missing=reference_missing / len(reference),
        current_missing=current_missing / len(current),
        psi=statistics.psi(reference_counts, current_counts),
        p_value=p_binned if p_value is None else p_value,
        ks=ks,
    )


def _decide(report: DriftReport, settings: DriftSettings) -> tuple[bool, str]:
    inputs = report.inputs
    drifted_inputs = [column.name for column in inputs if column.drifted]
    named = [column.name for column in report.columns if column.drifted and column.name in settings.features]
    reasons = []
    if report.drifted_share > settings.max_drifted_share:
        reasons.append(
            f"{len(drifted_inputs)} of {len(inputs)} inputs drifted ({report.drifted_share:.0%}, more than "
            f"monitoring.drift.max_drifted_share {settings.max_drifted_share:.0%}): {', '.join(drifted_inputs)}"
        )
    if named:
        reasons.append(f"drift in {', '.join(named)}, named in monitoring.drift.features")
    return bool(reasons), "; ".join(reasons)


def _judge(column: ColumnDrift, q_value: float, settings: DriftSettings) -> ColumnDrift:
    effects = column.effects(settings)
    large = [f"{name} {value:.3g} ≥ {limit:g}" for name, (value, limit) in effects.items() if value >= limit]
    small = [f"{name} {value:.3g} < {limit:g}" for name, (value, limit) in effects.items() if value < limit]
    significant = q_value <= settings.fdr
    if large and significant:
        why = f"{', '.join(large)}; q {q_value:.2g} ≤ fdr {settings.fdr:g}"
    elif large:
        why = f"{', '.join(large)}, but not significant: q {q_value:.2g} > fdr {settings.fdr:g}"
    elif significant:
        why = f"significant (q {q_value:.2g}) but small: {', '.join(small)}"
    else:
        why = "no shift"
    return replace(column, q_value=q_value, drifted=bool(large) and significant, why=why)


def _categories(column: Column, reference: pd.Series, current: pd.Series) -> ColumnDrift:
    reference_counts = _category_counts(reference)
    current_counts = _category_counts(current)
    known = list(reference_counts.index)
    current_known = current_counts.reindex(known, fill_value=0).to_numpy()
    unseen = int(current_counts.sum() - current_known.sum())
    reference_missing, current_missing = int(reference.isna().sum()), int(current.isna().sum())
    reference_bins = np.append(reference_counts.to_numpy(), [0, reference_missing])
    current_bins = np.append(current_known, [unseen, current_missing])
    return ColumnDrift(
        name=column.name,
        kind="category",
        role=column.role,
        bins=(*known, UNSEEN, MISSING),
        reference_shares=tuple(statistics.shares(reference_bins)),
        current_shares=tuple(statistics.shares(current_bins)),
        reference_missing=reference_missing / len(reference),
        current_missing=current_missing / len(current),
        psi=statistics.psi(reference_bins, current_bins),
        p_value=statistics.chi_square_p(reference_bins, current_bins),
        cramers_v=statistics.cramers_v(reference_bins, current_bins),
        unseen=unseen / len(current),
    )


def _category_counts(series: pd.Series) -> pd.Series:
    """Present values counted by their text (as the schema and the request model name categories): only the
    distinct values are turned into text, never every row."""
    counts = series.value_counts(dropna=True, sort=False)
    counts.index = counts.index.map(str)
    return counts.groupby(level=0, sort=True).sum()
