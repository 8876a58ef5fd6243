import json
import warnings
from collections.abc import Iterator

import dagster as dg
import pandas as pd
from pydantic import Field

from mlplatform.defs.data.batches import batch_of, latest_data_version, ledger
from mlplatform.lib.data import batches, cleaning, index_columns, ingest
from mlplatform.resources import ArtifactStore, ModelRegistry, ProjectSpecResource


def column_schema(frame: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(str(name), str(dtype)) for name, dtype in frame.dtypes.items()])


def versioned(frame: pd.DataFrame, version: str, metadata: dict) -> dg.Output[pd.DataFrame]:
    with warnings.catch_warnings():  # data_version on Output is marked beta; it is the content hash we want
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.Output(frame, data_version=dg.DataVersion(version), metadata=metadata)


class RawBatchConfig(dg.Config):
    file: str = Field(
        default="",
        description="For a folder of batches: the new file to ingest (its path or name, as `mlplatform run` and "
        "the ingest_batch runs it launches name it). Empty: the oldest new file.",
    )


@dg.asset(group_name="data", kinds={"pandas", "parquet"}, code_version="3", output_required=False)
def raw_batch(
    context: dg.AssetExecutionContext,
    config: RawBatchConfig,
    project: ProjectSpecResource,
    artifacts: ArtifactStore,
) -> Iterator[dg.Output[pd.DataFrame]]:
    """The next batch from the spec's source, as it arrived: the whole source, or a folder's oldest new file."""
    spec = project.load()
    batch_ledger = ledger(artifacts)
    wanted = f" ({config.file})" if config.file else ""
    context.log.info(f"Looking for a new batch{wanted} in {spec.source.kind} source {spec.source.uri} ({spec.name})")
    try:
        batch = batches.arriving_batch(spec, batch_ledger, config.file)
    except batches.UnreadableBatch as exc:
        folder = batch_ledger.quarantine(
            exc.batch, {"stage": "ingestion", "reasons": [str(exc)], "run_id": context.run.run_id}
        )
        raise batches.QuarantinedBatch(f"{exc}; the batch is kept in quarantine at {folder}") from exc
    if batch is None:
        context.log.info(f"No new batch: every file in {spec.source.uri} has been accepted or quarantined")
        return
    if batch_ledger.current_profile() is None:
        # Before anything was accepted, a column the spec names but the data lacks is a spec mistake more
        # likely than a bad batch: say so, and leave the batch where it is.
        ingest.check_columns(spec, batch.frame)
    frame = batch.frame
    # Said once here; the attribute must not travel on with the stored data.
    dropped = frame.attrs.pop(index_columns.DROPPED, [])
    if dropped:
        context.log.warning(
            f"Left out row-index column(s) {', '.join(map(repr, dropped))} of {batch.name}: their values "
            f"are row positions, not data (source.drop_index_columns: false keeps them)"
        )
    version = ingest.data_version(frame)
    context.log.info(f"Batch {batch.batch_id} ({batch.name}): {len(frame)} rows x {frame.shape[1]} columns")
    yield versioned(
        frame,
        version,
        {
            "dagster/row_count": len(frame),
            "dagster/column_schema": column_schema(frame),
            "data_version": version,
            "batch_id": batch.batch_id,
            "batch": batch.name,
            "source_path": batch.source_path or "",
            "appends": batch.appends,
            "index_columns_dropped": dg.MetadataValue.json(dropped),
            "source": spec.source.uri,
            "spec": project.spec_path,
            "preview": dg.MetadataValue.md(frame.head(5).to_markdown(index=False)),
        },
    )


@dg.asset(group_name="data", kinds={"pandas", "parquet"}, code_version="2")
def accepted_data(
    context: dg.AssetExecutionContext, raw_batch: pd.DataFrame, artifacts: ArtifactStore
) -> dg.Output[pd.DataFrame]:
    """Every batch that passed its checks: the latest snapshot, or a folder's batches in arrival order."""
    batch_ledger = ledger(artifacts)
    batch = batch_of(context.instance, raw_batch)
    added = batch_ledger.accept(batch, context.run.run_id)
    frame = batch_ledger.accepted_frame()
    manifest = batch_ledger.manifest()
    version = ingest.data_version(frame)
    batch_ledger.record_version(version)
    verb = "joined" if batch.appends else "replaced"
    context.log.info(
        f"Batch {batch.batch_id} {verb if added else 'was already'} the training data: "
        f"{len(frame)} rows from {len(manifest)} accepted batch(es), data version {version}"
    )
    return versioned(
        frame,
        version,
        {
            "dagster/row_count": len(frame),
            "dagster/column_schema": column_schema(frame),
            "data_version": version,
            "latest_batch": batch.batch_id,
            "batches": len(manifest),
            "manifest": dg.MetadataValue.md(pd.DataFrame(manifest[-20:]).to_markdown(index=False)),
            "ledger": dg.MetadataValue.path(str(batch_ledger.root)),
        },
    )


class CleanedDataConfig(dg.Config):
    data_version: str = Field(
        default="",
        description="Clean the training data as it was at this recorded data version (to reproduce a model) "
        "instead of the current accepted data.",
    )


NOTHING_NEW = "mlplatform/nothing_new"  # the tag of the model that makes training again pointless


@dg.asset(group_name="data", kinds={"pandas", "parquet"}, code_version="2", output_required=False)
def cleaned_data(
    context: dg.AssetExecutionContext,
    config: CleanedDataConfig,
    accepted_data: pd.DataFrame,
    project: ProjectSpecResource,
    artifacts: ArtifactStore,
    registry: ModelRegistry,
) -> Iterator[dg.Output[pd.DataFrame]]:
    """The accepted data with types coerced, unlabeled rows and duplicates dropped (counted), missing made explicit."""
    spec = project.load()
    if config.data_version:
        accepted_data, version = as_recorded(context, ledger(artifacts), config.data_version), config.data_version
    else:
        version = latest_data_version(context.instance)
        # Every random step is seeded: the same data, spec and code would train the model already stored.
        existing = registry.for_project(spec.name).trained_on(version, spec)
        if existing is not None:
            context.log.info(
                f"Nothing new: {existing.tag} was already trained on data version {version} with this spec and "
                "code, so training stops here (nothing downstream runs)"
            )
            context.log_event(
                dg.AssetObservation(
                    asset_key=context.asset_key,
                    metadata={NOTHING_NEW: existing.tag, "data_version": version},
                )
            )
            return
    frame, report = cleaning.clean(accepted_data, spec)
    context.log.info(
        f"Cleaned {report['rows_in']} -> {report['rows_out']} rows of data version {version}: "
        f"{report['rows_without_target_dropped']} unlabeled rows ({report['unlabeled_fraction']:.1%}, no "
        f"{spec.problem.target!r}) and {report['duplicate_rows_dropped']} duplicates dropped"
    )
    yield dg.Output(
        frame,
        metadata={
            "dagster/row_count": len(frame),
            "dagster/column_schema": column_schema(frame),
            "data_version": version,  # of the accepted data it was cleaned from: the lineage of every model
            "rows_in": report["rows_in"],
            "duplicate_rows_dropped": report["duplicate_rows_dropped"],
            "rows_without_target_dropped": report["rows_without_target_dropped"],
            "unlabeled_fraction": round(report["unlabeled_fraction"], 4),
            "cleaning": dg.MetadataValue.json(json.loads(json.dumps(report))),
        },
    )


def as_recorded(
    context: dg.AssetExecutionContext, batch_ledger: batches.BatchLedger, data_version: str
) -> pd.DataFrame:
    """The training data at a recorded version, rebuilt from the accepted batches and checked by its hash."""
    frame = batch_ledger.frame_at(data_version)
    rebuilt = ingest.data_version(frame)
    if rebuilt != data_version:
        raise batches.RejectedBatch(
            f"data version {data_version}: the accepted batches it lists now hash to {rebuilt}; "
            f"the ledger at {batch_ledger.root} was changed by hand"
        )
    context.log.info(f"Rebuilt the training data at data version {data_version}: {len(frame)} rows")
    return frame
