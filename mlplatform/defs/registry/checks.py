import dagster as dg
import pandas as pd

from mlplatform.defs.registry.assets import challenger_model
from mlplatform.lib.registry.promotion import gate
from mlplatform.lib.registry.registry import ModelVersion
from mlplatform.resources import ModelRegistry, ProjectSpecResource


@dg.asset_check(asset=challenger_model, blocking=True, additional_ins={"holdout_data": dg.AssetIn()})
def challenger_beats_champion(
    challenger_model: ModelVersion,
    holdout_data: pd.DataFrame,
    project: ProjectSpecResource,
    registry: ModelRegistry,
) -> dg.AssetCheckResult:
    """The challenger clears the spec's metric floors and beats the champion by the configured margin on the
    holdout rows neither trained on; otherwise the champion stays, and this says why with both sets of numbers
    and how many holdout rows were compared. Losing is a normal outcome, not an error: the verdict is a
    warning, the run succeeds and champion_model (and what serves it) is skipped."""
    spec = project.load()
    verdict = gate(challenger_model, holdout_data, spec, registry.for_project(spec.name))
    names = sorted(set(verdict.challenger) | set(verdict.champion or {}))
    table = pd.DataFrame(
        {
            "metric": names,
            f"challenger {challenger_model.tag}": [verdict.challenger.get(n) for n in names],
            f"champion {verdict.champion_tag or '(none)'}": [(verdict.champion or {}).get(n) for n in names],
        }
    )
    return dg.AssetCheckResult(
        passed=verdict.promote,
        # A lost gate shows in the UI without failing the run; champion_model, judging alike, skips itself.
        severity=dg.AssetCheckSeverity.WARN,
        description=verdict.summary,
        metadata={
            "verdict": "promote" if verdict.promote else "keep the champion",
            "reasons": dg.MetadataValue.md("\n".join(f"- {reason}" for reason in verdict.reasons)),
            "comparison": dg.MetadataValue.md(table.to_markdown(index=False, floatfmt=".4f")),
            "challenger": challenger_model.tag,
            "champion": verdict.champion_tag or "",
            "margin": spec.promotion.margin,
            **(verdict.rows.metadata() if verdict.rows else {}),
        },
    )
