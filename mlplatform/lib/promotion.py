"""The promotion gate: does a challenger clear the spec's floors and beat the champion on the same holdout?"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from mlplatform.lib import evaluation
from mlplatform.lib.registry import ModelVersion, Registry
from mlplatform.lib.spec import LOWER_IS_BETTER, ProjectSpec


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reasons: tuple[str, ...]  # each floor or comparison that decided it, with the numbers
    metric: str
    challenger: dict[str, float]
    champion: dict[str, float] | None  # the champion's metrics on the same holdout; None when there is none
    champion_tag: str | None

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
    """The promotion gate: score the stored challenger and the current champion on the same holdout, and judge."""
    challenger_metrics = evaluation.score(models.load(challenger.tag).model, holdout, spec)
    champion = models.champion()
    if champion is None:
        return judge(challenger_metrics, None, spec)
    try:
        champion_metrics = evaluation.score(models.load(champion.tag).model, holdout, spec)
    except evaluation.EvaluationError as exc:
        raise evaluation.EvaluationError(
            f"champion {champion.tag} cannot be scored on this holdout ({exc}); if the data changed on purpose, "
            f"promote {challenger.tag} by hand: mlplatform promote {challenger.tag} --reason '...'"
        ) from exc
    return judge(challenger_metrics, champion_metrics, spec, champion.tag)
