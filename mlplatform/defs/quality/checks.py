import dagster as dg
import pandas as pd
from sklearn.compose import ColumnTransformer

from mlplatform.defs.data.assets import raw_batch
from mlplatform.defs.data.batches import batch_of, ledger, local_folder
from mlplatform.defs.features.assets import feature_pipeline
from mlplatform.lib.quality import builders, feature_quality, gx_suites, outcomes
from mlplatform.resources import ArtifactStore, ProjectSpecResource


def report_metadata(report: outcomes.QualityReport, docs: str | None) -> dict:
    """What a person needs to act without a terminal: each failing rule, its column, counts and samples."""
    metadata: dict = {
        "expectations": len(report.outcomes),
        "errors": len(report.errors),
        "warnings": len(report.warnings),
        "rows": report.rows,
        "validation_seconds": round(report.seconds, 3),
        **report.extra,
    }
    if report.errors or report.warnings:
        metadata["failures"] = dg.MetadataValue.md(report.table().to_markdown(index=False))
        metadata["failure_details"] = dg.MetadataValue.json(report.as_dict()["failures"])
    if docs:
        metadata["data_docs"] = dg.MetadataValue.path(docs)
    return metadata


def check_result(report: outcomes.QualityReport, metadata: dict, what: str) -> dg.AssetCheckResult:
    if report.passed:
        # The UI shows the description first: a warning (a suspected leak, say) must be readable there.
        warned = f"; {len(report.warnings)} warning(s):\n" + "\n".join(report.lines()) if report.warnings else ""
        description = f"{what}: all {len(report.outcomes)} blocking expectations passed{warned}"
    else:
        description = f"{what} rejected:\n" + "\n".join(report.lines())
    return dg.AssetCheckResult(
        passed=not (report.errors or report.warnings),
        severity=dg.AssetCheckSeverity.ERROR if report.errors else dg.AssetCheckSeverity.WARN,
        description=description,
        metadata=metadata,
    )


@dg.asset_check(asset=raw_batch, blocking=True)
def raw_batch_is_valid(
    context: dg.AssetCheckExecutionContext,
    raw_batch: pd.DataFrame,
    project: ProjectSpecResource,
    artifacts: ArtifactStore,
) -> dg.AssetCheckResult:
    """The batch meets the spec's contract, the accepted data's column types, its profile and the user's
    expectations; a batch that does not is moved to quarantine with its reasons and goes no further."""
    spec = project.load()
    batch = batch_of(context.instance, raw_batch)
    batch_ledger = ledger(artifacts)
    columns = [str(c) for c in raw_batch.columns]
    profile, kinds = batch_ledger.current_profile(), batch_ledger.accepted_kinds()
    rules = builders.batch_rules(spec, columns, profile, len(raw_batch), kinds)
    with local_folder(artifacts, "quality", "docs", "raw_batch", context.run.run_id) as (folder, where):
        report = gx_suites.validate(raw_batch, rules, "raw_batch", docs_dir=folder)
    docs = f"{where}/index.html" if report.docs_index else None
    metadata = report_metadata(report, docs)
    metadata["batch"] = batch.name
    if report.errors:
        document = {
            "stage": "validation",
            "reasons": report.lines(),
            "report": report.as_dict(),
            "run_id": context.run.run_id,
        }
        folder = batch_ledger.quarantine(batch, document)
        metadata["quarantine"] = dg.MetadataValue.path(str(folder))
        context.log.error(f"Batch {batch.batch_id} ({batch.name}) rejected and quarantined at {folder}")
    return check_result(report, metadata, f"batch {batch.batch_id} ({batch.name})")


@dg.asset_check(
    asset=feature_pipeline,
    blocking=True,
    additional_ins={"training_data": dg.AssetIn(), "holdout_data": dg.AssetIn()},
)
def features_are_valid(
    context: dg.AssetCheckExecutionContext,
    feature_pipeline: ColumnTransformer,
    training_data: pd.DataFrame,
    holdout_data: pd.DataFrame,
    project: ProjectSpecResource,
    artifacts: ArtifactStore,
) -> dg.AssetCheckResult:
    """The features a model will be fed are present and finite on both splits (checked on a sample, and the
    numeric inputs on every row), and a classification target has at least two classes to learn."""
    with local_folder(artifacts, "quality", "docs", "features", context.run.run_id) as (folder, where):
        report = feature_quality.validate_features(
            feature_pipeline, training_data, holdout_data, project.load(), docs_dir=folder
        )
    return check_result(
        report, report_metadata(report, f"{where}/index.html" if report.docs_index else None), "features"
    )
