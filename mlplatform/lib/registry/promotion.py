"""The promotion gate: does a challenger clear the spec's floors and beat the champion on holdout rows neither
model trained on?"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from mlplatform.lib.evaluation import evaluation
from mlplatform.lib.features import features
from mlplatform.lib.registry.registry import ModelVersion, Registry
from mlplatform.lib.spec import LOWER_IS_BETTER, ProjectSpec
from mlplatform.lib.training import metrics


@dataclass(frozen=True)
class ComparedRows:
    """Which holdout rows the gate scored: those neither model trained on."""

    holdout: int
    compared: int
    champion_trained: int  # holdout rows left out because the champion trained on them
    challenger_trained: int  # the same for the challenger (none, unless the split changed)
    champion_ids_unknown: str = ""  # why the champion's training rows cannot be told apart, when they cannot

    def metadata(self) -> dict[str, int | bool]:
        return {
            "holdout_rows": self.holdout,
            "compared_rows": self.compared,
            "excluded_champion_trained_rows": self.champion_trained,
            "excluded_challenger_trained_rows": self.challenger_trained,
            "champion_training_rows_known": not self.champion_ids_unknown,
        }


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reasons: tuple[str, ...]  # each floor or comparison that decided it, with the numbers
    metric: str
    challenger: dict[str, float]
    champion: dict[str, float] | None  # the champion's metrics on the same holdout; None when there is none
    champion_tag: str | None
    rows: ComparedRows | None = None  # set by ``gate``; ``judge`` only sees metrics

    @property
    def summary(self) -> str:
        verb = "promote" if self.promote else "keep the champion"
        return f"{verb}: " + "; ".join(self.reasons)


def improvement(metric: str, challenger: float, champion: float) -> float:
    """How much better the challenger is, positive when better, whichever direction the metric runs."""
    return champion - challenger if metric in LOWER_IS_BETTER else challenger - champion


def judge(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    spec: ProjectSpec,
    champion_tag: str | None = None,
) -> Verdict:
    """Promote when every floor is cleared and, if there is a champion, the challenger is better on the
    primary metric by at least ``promotion.margin`` (and better at all when the margin is 0)."""
    metric, margin = spec.problem.primary_metric, spec.promotion.margin
    reasons, passed = [], True
    for name, floor in spec.promotion.floors.items():
        value = challenger.get(name)
        if value is None:
            passed = False
            reasons.append(f"{name} is not measured on this holdout, so its floor {floor:g} cannot be checked")
        elif name in LOWER_IS_BETTER and value > floor:
            passed = False
            reasons.append(f"{name} {value:.4f} is above its ceiling {floor:g} (promotion.floors)")
        elif name not in LOWER_IS_BETTER and value < floor:
            passed = False
            reasons.append(f"{name} {value:.4f} is below its floor {floor:g} (promotion.floors)")
        else:
            reasons.append(
                f"{name} {value:.4f} clears its {'ceiling' if name in LOWER_IS_BETTER else 'floor'} {floor:g}"
            )
    if champion is None:
        reasons.append("there is no champion yet: the first model that clears the floors becomes champion")
    else:
        gain = improvement(metric, challenger[metric], champion[metric])
        compared = f"{metric} {challenger[metric]:.4f} vs champion {champion_tag} {champion[metric]:.4f}"
        if gain > 0 and gain >= margin:
            reasons.append(f"{compared}: better by {gain:.4f} (margin {margin:g})")
        else:
            passed = False
            shortfall = "no better than" if gain <= 0 else f"better by only {gain:.4f}, less than the margin {margin:g}"
            reasons.append(f"{compared}: {shortfall}" + (" the champion" if gain <= 0 else ""))
    return Verdict(
        passed, tuple(reasons), metric, dict(challenger), None if champion is None else dict(champion), champion_tag
    )


def gate(challenger: ModelVersion, holdout: pd.DataFrame, spec: ProjectSpec, models: Registry) -> Verdict:
    """The promotion gate: score the stored challenger and the current champion on the holdout rows neither
    trained on (by the training row ids stored with each version), and judge. A holdout drawn from grown data
    can hold rows an older champion learned from; scoring it on them would favour it."""
    holdout_ids = features.RowIds.of(holdout, spec)
    challenger_seen, _ = _seen(holdout_ids, models.training_rows(challenger.tag))
    champion = models.champion()
    champion_seen, unknown = _seen(holdout_ids, None if champion is None else models.training_rows(champion.tag))
    unseen = ~(challenger_seen | champion_seen)
    rows = ComparedRows(
        holdout=len(holdout),
        compared=int(unseen.sum()),
        champion_trained=int(champion_seen.sum()),
        challenger_trained=int((challenger_seen & ~champion_seen).sum()),
        champion_ids_unknown="" if champion is None else unknown,
    )
    metric = spec.problem.primary_metric
    if not unseen.any():
        reason = (
            f"no holdout row is left that neither model trained on ({rows.champion_trained} of {rows.holdout} "
            f"were champion {champion.tag if champion else '-'}'s training rows, {rows.challenger_trained} the "
            f"challenger's): no fair comparison, so nothing is promoted; promote {challenger.tag} by hand if it "
            "should serve (the `promote` command, or the promote_model job)"
        )
        return Verdict(False, (reason,), metric, {}, None, champion.tag if champion else None, rows)
    compared = holdout[unseen]
    challenger_metrics = _score(models, challenger.tag, compared, spec)
    champion_metrics = None
    if champion is not None:
        try:
            champion_metrics = _score(models, champion.tag, compared, spec)
        except metrics.MetricError as exc:  # an EvaluationError, or a metric the champion cannot give
            raise evaluation.EvaluationError(
                f"champion {champion.tag} cannot be scored on this holdout ({exc}); if the data changed on "
                f"purpose, promote {challenger.tag} by hand (the `promote` command, or the promote_model job)"
            ) from exc
    verdict = judge(challenger_metrics, champion_metrics, spec, champion.tag if champion else None)
    return replace(verdict, reasons=(*verdict.reasons, _rows_reason(rows, verdict.champion_tag)), rows=rows)


def _seen(holdout: features.RowIds, trained: features.RowIds | None) -> tuple[np.ndarray, str]:
    """Which holdout rows a model trained on, and why that cannot be known when it cannot: its ids were not
    stored, or were hashed from other columns, so none can be left out."""
    nothing = np.zeros(len(holdout.values), dtype=bool)
    if trained is None:
        return nothing, "was stored without its training row ids"
    if trained.basis != holdout.basis:
        return nothing, f"has training row ids of another kind ({trained.basis}; this holdout's: {holdout.basis})"
    return np.isin(holdout.values, trained.values), ""


def _score(models: Registry, tag: str, rows: pd.DataFrame, spec: ProjectSpec) -> dict[str, float]:
    return evaluation.score(models.load(tag).model, rows.reset_index(drop=True), spec)


def _rows_reason(rows: ComparedRows, champion_tag: str | None) -> str:
    if champion_tag is None:
        said = f"scored on {rows.compared} holdout rows"
    elif rows.champion_ids_unknown:
        said = (
            f"compared on the whole holdout ({rows.compared} rows): champion {champion_tag} "
            f"{rows.champion_ids_unknown}, so rows it trained on cannot be left out"
        )
    else:
        said = (
            f"compared on {rows.compared} holdout rows neither model trained on; {rows.champion_trained} of the "
            f"{rows.holdout} holdout rows were left out because champion {champion_tag} trained on them"
        )
    if rows.challenger_trained:
        said += f"; {rows.challenger_trained} left out because the challenger trained on them"
    return said
