import json
import warnings

import dagster as dg
import pandas as pd

from mlplatform.lib import cleaning, ingest
from mlplatform.resources import ProjectSpecResource


def column_schema(frame: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(str(name), str(dtype)) for name, dtype in frame.dtypes.items()])


@dg.asset(group_name="data", kinds={"pandas", "parquet"}, code_version="1")
def raw_data(context: dg.AssetExecutionContext, project: ProjectSpecResource) -> dg.Output[pd.DataFrame]:
    """The latest batch from the spec's source (file, folder, S3, SQL or HTTP), exactly as ingested."""
    spec = project.load()
    context.log.info(f"Ingesting {spec.source.kind} source {spec.source.uri} for project {spec.name}")
    frame = ingest.read_source(spec)
    ingest.check_columns(spec, frame)
    version = ingest.data_version(frame)
    context.log.info(f"Ingested {len(frame)} rows x {frame.shape[1]} columns, data version {version}")
    metadata = {
        "dagster/row_count": len(frame),
        "dagster/column_schema": column_schema(frame),
        "data_version": version,
        "source": spec.source.uri,
        "spec": project.spec_path,
        "preview": dg.MetadataValue.md(frame.head(5).to_markdown(index=False)),
    }
    with warnings.catch_warnings():  # data_version on Output is marked beta; it is the content hash we want
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.Output(frame, data_version=dg.DataVersion(version), metadata=metadata)


@dg.asset(group_name="data", kinds={"pandas", "parquet"}, code_version="1")
def cleaned_data(
    context: dg.AssetExecutionContext, raw_data: pd.DataFrame, project: ProjectSpecResource
) -> dg.Output[pd.DataFrame]:
    """The raw batch with types coerced, duplicates and target-less rows dropped, missing values made explicit."""
    frame, report = cleaning.clean(raw_data, project.load())
    context.log.info(
        f"Cleaned {report['rows_in']} -> {report['rows_out']} rows: {report['duplicate_rows_dropped']} duplicates, "
        f"{report['rows_without_target_dropped']} without target dropped"
    )
    return dg.Output(
        frame,
        metadata={
            "dagster/row_count": len(frame),
            "dagster/column_schema": column_schema(frame),
            "rows_in": report["rows_in"],
            "duplicate_rows_dropped": report["duplicate_rows_dropped"],
            "rows_without_target_dropped": report["rows_without_target_dropped"],
            "cleaning": dg.MetadataValue.json(json.loads(json.dumps(report))),
        },
    )
