"""The one Definitions object: every domain's assets, with resources picked for the environment."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from mlplatform.defs.data import assets as data_assets
from mlplatform.defs.evaluation import assets as evaluation_assets
from mlplatform.defs.features import assets as feature_assets
from mlplatform.defs.progress import progress_logger
from mlplatform.defs.quality import assets as quality_assets
from mlplatform.defs.quality import checks as quality_checks
from mlplatform.defs.training import assets as training_assets
from mlplatform.resources import ArtifactIOManager, ArtifactStore, ModelRegistry, ProjectSpecResource
from mlplatform.settings import Settings

MATERIALIZE_ALL = "materialize_all"
INGEST_BATCH = "ingest_batch"
TRAIN_AND_EVALUATE = "train_and_evaluate"
INGESTION = dg.AssetSelection.assets("raw_batch", "accepted_data", "data_profile")


def build_resources(settings: Settings) -> dict[str, object]:
    """The single switch between environments: only the values differ, never the wiring."""
    return {
        "project": ProjectSpecResource(spec_path=str(settings.spec_path)),
        "artifacts": ArtifactStore(root=settings.artifact_root),
        "io_manager": ArtifactIOManager(root=settings.artifact_root),
        "registry": ModelRegistry(bentoml_home=str(settings.bentoml_home), pointer_root=settings.artifact_root),
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    # In-process locally: the multiprocess executor re-imports pandas, scikit-learn and GX in every step
    # (about 7 s a step on a 2-core machine), which costs more than the steps themselves.
    executor = dg.in_process_executor if settings.executor == "in_process" else dg.multiprocess_executor
    domains = [data_assets, quality_assets, feature_assets, training_assets, evaluation_assets]
    return dg.Definitions(
        assets=dg.load_assets_from_modules(domains),
        asset_checks=dg.load_asset_checks_from_modules([quality_checks]),
        jobs=[
            dg.define_asset_job(
                MATERIALIZE_ALL,
                selection=dg.AssetSelection.all(),
                description="Every asset, from ingestion to the evaluation report.",
            ),
            dg.define_asset_job(
                INGEST_BATCH,
                selection=INGESTION,
                description="Validate the next batch and, if it passes, add it to the training data.",
            ),
            dg.define_asset_job(
                TRAIN_AND_EVALUATE,
                selection=dg.AssetSelection.all() - INGESTION,
                description="Everything downstream of the accepted data: cleaning, features, model, report.",
            ),
        ],
        resources=build_resources(settings),
        executor=executor,
        loggers={"console": dg.colored_console_logger, "progress": progress_logger},
    )


def run_config(spec_path: Path, *, progress: bool = False) -> dict:
    """Run config naming the spec explicitly, so the run records which spec it used."""
    config: dict = {"resources": {"project": {"config": {"spec_path": str(spec_path)}}}}
    if progress:
        config["loggers"] = {"progress": {}}
    return config


defs = build_definitions(Settings.from_env())


def materialize_all_job() -> dg.JobDefinition:
    """The whole graph as a job that another process can rebuild (for ``dagster.execute_job``)."""
    return defs.resolve_job_def(MATERIALIZE_ALL)


def ingest_batch_job() -> dg.JobDefinition:
    return defs.resolve_job_def(INGEST_BATCH)


def train_and_evaluate_job() -> dg.JobDefinition:
    return defs.resolve_job_def(TRAIN_AND_EVALUATE)
