"""Two-sample statistics on counts and sorted arrays, on numpy and scipy: the population stability index, the
chi-square test of homogeneity, Cramér's V with both samples weighted equally, the exact Kolmogorov-Smirnov
distance with its p-value, and the decile bins the numeric PSI uses. ``mlplatform.lib.monitoring.drift``
turns them into a drift report."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

DECILES = np.linspace(0.1, 0.9, 9)
# A bin's share is floored here in PSI, so a bin empty on one side (a category the reference never held) adds a
# large but finite term: ln(share / 0.0001).
SHARE_FLOOR = 1e-4
# Up to this many present values on each side, scipy's exact KS p-value (what ks_2samp's "auto" does); beyond,
# Smirnov's asymptotic distribution, as ks_2samp then uses.
EXACT_KS_ROWS = 10_000


def decile_edges(present: np.ndarray) -> np.ndarray:
    """Bin edges: just below the reference's minimum, its deciles, its maximum (bins are closed on the right),
    so values below or above everything the model saw fall in bins of their own. Equal deciles (a column with
    few values) merge."""
    if not len(present):
        return np.empty(0)
    return np.unique(np.r_[np.nextafter(present[0], -np.inf), np.quantile(present, DECILES), present[-1]])


def binned(present_sorted: np.ndarray, edges: np.ndarray) -> np.ndarray:
    cumulative = np.searchsorted(present_sorted, edges, side="right")
    return np.diff(np.r_[0, cumulative, len(present_sorted)])


def bin_labels(edges: np.ndarray) -> list[str]:
    """Labels of the bins ``decile_edges`` cuts: below the minimum, the minimum to the first decile, ..., the
    last decile to the maximum, above the maximum (numbers to 4 significant digits)."""
    if not len(edges):
        return ["(present)"]
    lowest = np.nextafter(edges[0], np.inf)
    labels = [f"< {lowest:.4g}"]
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        if low == edges[0]:
            labels.append(f"= {high:.4g}" if high == lowest else f"[{lowest:.4g}, {high:.4g}]")
        else:
            labels.append(f"({low:.4g}, {high:.4g}]")
    return [*labels, f"> {edges[-1]:.4g}"]


def shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else np.zeros(len(counts))


def psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """The population stability index of two sets of counts over the same bins."""
    expected = np.maximum(shares(np.asarray(reference_counts, float)), SHARE_FLOOR)
    actual = np.maximum(shares(np.asarray(current_counts, float)), SHARE_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def chi_square_p(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """The chi-square test of homogeneity of two sets of counts (bins empty on both sides left out)."""
    table = np.vstack([reference_counts, current_counts]).astype(float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def cramers_v(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Cramér's V of the two-row table with both samples weighted equally (see the module's docstring)."""
    p = shares(np.asarray(reference_counts, float))
    q = shares(np.asarray(current_counts, float))
    total = p + q
    kept = total > 0
    return float(math.sqrt(0.5 * np.sum((p[kept] - q[kept]) ** 2 / total[kept])))


def ks_test(reference_sorted: np.ndarray, current_sorted: np.ndarray) -> tuple[float, float]:
    """The two-sample KS distance D and its p-value, on sorted samples without missing values.

    D is exact: both empirical CDFs are evaluated at each distinct value of either sample (where they change),
    at the last copy of a tied value, which is what ``ks_2samp`` computes by concatenating and searching both
    samples; here each sample is searched only at the other's distinct values."""
    n, m = len(reference_sorted), len(current_sorted)
    if max(n, m) <= EXACT_KS_ROWS:
        result = stats.ks_2samp(reference_sorted, current_sorted)
        return float(result.statistic), float(result.pvalue)
    distance = 0.0
    for sample, size, other, other_size in (
        (reference_sorted, n, current_sorted, m),
        (current_sorted, m, reference_sorted, n),
    ):
        last = np.flatnonzero(np.r_[sample[1:] != sample[:-1], True])  # the last copy of each distinct value
        own_cdf = (last + 1) / size
        other_cdf = np.searchsorted(other, sample[last], side="right") / other_size
        distance = max(distance, float(np.abs(own_cdf - other_cdf).max()))
    larger, smaller = max(n, m), min(n, m)
    effective = larger * smaller / (larger + smaller)
    return distance, float(np.clip(stats.kstwo.sf(distance, np.round(effective)), 0.0, 1.0))
