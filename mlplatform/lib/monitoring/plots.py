"""Distribution overlays for the drift report: what the model was trained on against what it is served, as PNG."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mlplatform.lib.evaluation.plots import figure_png
from mlplatform.lib.monitoring.drift import ColumnDrift

HISTOGRAM_BINS = 40
MAX_BARS = 20  # categories shown: the largest on either side; the rest are left out of the picture, not the PSI


def overlay_png(column: ColumnDrift, reference: pd.Series, current: pd.Series) -> bytes:
    """Numbers: both histograms as densities on common bins (the middle 99% of either side), missing shares in the
    legend. Categories: each side's share per category, the unseen and missing bins included."""
    figure = Figure(figsize=(6.5, 3.6))
    axes = figure.subplots()
    if column.kind == "number":
        _histograms(axes, column, reference, current)
    else:
        _bars(axes, column)
    axes.set_title(f"{column.name}: {column.why}", fontsize=9)
    axes.legend(fontsize=8)
    return figure_png(figure)


def _histograms(axes, column: ColumnDrift, reference: pd.Series, current: pd.Series) -> None:
    reference_values = _present(reference)
    current_values = _present(current)
    both = [values for values in (reference_values, current_values) if len(values)]
    low = min(np.quantile(values, 0.005) for values in both)
    high = max(np.quantile(values, 0.995) for values in both)
    edges = np.linspace(low, high if high > low else low + 1.0, HISTOGRAM_BINS + 1)
    for values, missing, label, colour in (
        (reference_values, column.reference_missing, "trained on", "tab:blue"),
        (current_values, column.current_missing, "served", "tab:orange"),
    ):
        if len(values):
            axes.hist(
                np.clip(values, edges[0], edges[-1]),
                bins=edges,
                density=True,
                histtype="stepfilled" if label == "trained on" else "step",
                alpha=0.45 if label == "trained on" else 1.0,
                linewidth=1.6,
                color=colour,
                label=f"{label} ({missing:.1%} missing)",
            )
    axes.set_xlabel(column.name)
    axes.set_ylabel("density")


def _present(series: pd.Series) -> np.ndarray:
    values = series.to_numpy(dtype="float64", na_value=np.nan)
    return values[~np.isnan(values)]


def _bars(axes, column: ColumnDrift) -> None:
    reference, current = np.asarray(column.reference_shares), np.asarray(column.current_shares)
    shown = np.argsort(-np.maximum(reference, current), kind="stable")[:MAX_BARS]
    shown = shown[np.maximum(reference, current)[shown] > 0]
    positions = np.arange(len(shown))
    axes.bar(positions - 0.2, reference[shown], width=0.4, label="trained on", color="tab:blue", alpha=0.6)
    axes.bar(positions + 0.2, current[shown], width=0.4, label="served", color="tab:orange")
    axes.set_xticks(positions, [column.bins[i] for i in shown], rotation=30, ha="right", fontsize=8)
    axes.set_ylabel("share of rows")
