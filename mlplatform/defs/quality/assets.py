import dagster as dg
import pandas as pd

from mlplatform.defs.data.batches import ledger
from mlplatform.lib.quality import profiling
from mlplatform.resources import ArtifactStore, ProjectSpecResource


@dg.asset(group_name="quality", kinds={"pandas"}, code_version="1")
def data_profile(
    context: dg.AssetExecutionContext,
    accepted_data: pd.DataFrame,
    project: ProjectSpecResource,
    artifacts: ArtifactStore,
) -> dg.MaterializeResult:
    """Ranges, category sets and null fractions learned from the accepted data; the next batch is held to them."""
    profile = profiling.learn_profile(accepted_data, project.load())
    event = context.instance.get_latest_materialization_event(dg.AssetKey("accepted_data"))
    version = str(event.asset_materialization.metadata["data_version"].value)
    path = ledger(artifacts).save_profile(profile, version)
    rows = [
        {
            "column": name,
            "kind": entry["kind"],
            "null_fraction": round(entry["null_fraction"], 4),
            "range": f"{entry['min']:g} .. {entry['max']:g}" if "min" in entry else "",
            "values": ", ".join(entry.get("values", [])[:10]),
        }
        for name, entry in profile["columns"].items()
    ]
    context.log.info(f"Profiled {len(rows)} columns of data version {version}")
    return dg.MaterializeResult(
        metadata={
            "data_version": version,
            "columns": len(rows),
            "profile": dg.MetadataValue.md(pd.DataFrame(rows).to_markdown(index=False)),
            "path": dg.MetadataValue.path(str(path)),
        }
    )
