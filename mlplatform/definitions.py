"""The one Definitions object: every domain's assets, with resources picked for the environment."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource

from mlplatform.defs import monitoring
from mlplatform.defs.automation.alerts import alert_sensors
from mlplatform.defs.automation.monitor import MONITOR_JOB, monitor_sensor
from mlplatform.defs.automation.triggers import PIPELINE_TAG, build_triggers
from mlplatform.defs.data import assets as data_assets
from mlplatform.defs.deployment import assets as deployment_assets
from mlplatform.defs.evaluation import assets as evaluation_assets
from mlplatform.defs.features import assets as feature_assets
from mlplatform.defs.logs import JSON_LOGGER, json_logger
from mlplatform.defs.monitoring import drift as drift_monitoring
from mlplatform.defs.monitoring import performance as performance_monitoring
from mlplatform.defs.monitoring.freshness import with_freshness
from mlplatform.defs.progress import progress_logger
from mlplatform.defs.quality import assets as quality_assets
from mlplatform.defs.quality import checks as quality_checks
from mlplatform.defs.registry import assets as registry_assets
from mlplatform.defs.registry import checks as registry_checks
from mlplatform.defs.training import assets as training_assets
from mlplatform.lib.spec import load_spec
from mlplatform.resources import (
    ArtifactIOManager,
    ArtifactStore,
    Compute,
    ImageRegistry,
    KubernetesServing,
    LocalServing,
    ModelRegistry,
    ProjectSpecResource,
)
from mlplatform.resources.object_storage import configure_object_storage, encryption_arguments
from mlplatform.resources.pods import CandidatePods
from mlplatform.resources.predictions import PredictionLogs
from mlplatform.settings import Settings, SettingsError

MATERIALIZE_ALL = "materialize_all"
INGEST_BATCH = "ingest_batch"
TRAIN_AND_EVALUATE = "train_and_evaluate"
PROMOTE_MODEL = "promote_model"
REPRODUCE_MODEL = "reproduce_model"
DEPLOY_CHAMPION = "deploy_champion"
INGESTION = dg.AssetSelection.assets("raw_batch", "accepted_data", "data_profile")
# Watching the served model: refreshed by the monitor job (and its sensor), never by a training run.
MONITORING = dg.AssetSelection.groups(monitoring.GROUP)
# From cleaning to a stored challenger: what retraining at a recorded data version re-runs (never promoting).
REPRODUCTION = (
    dg.AssetSelection.assets("cleaned_data").downstream() - dg.AssetSelection.assets("champion_model").downstream()
).without_checks() | dg.AssetSelection.checks_for_assets("feature_pipeline")


def build_resources(settings: Settings) -> dict[str, object]:
    """The single switch between environments: only the values differ, never the wiring."""
    configure_object_storage(settings)  # every S3 write of this process, encrypted as the settings say
    resources: dict[str, object] = {
        "project": ProjectSpecResource(spec_path=str(settings.spec_path)),
        "artifacts": ArtifactStore(root=settings.artifact_root),
        "io_manager": ArtifactIOManager(
            root=settings.artifact_root,
            encryption=encryption_arguments(settings),
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
        ),
        "registry": ModelRegistry.for_settings(settings),
        "compute": Compute(parallel_steps=settings.executor == "multiprocess"),
        "candidate_pods": CandidatePods.for_settings(settings),
        # dagster-aws's client (the new-data sensor's), from boto's own chain (environment, profile, IAM role): no
        # key in code or spec.
        "s3": S3Resource(endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region),
        "prediction_logs": PredictionLogs(folder=str(settings.prediction_log)),
    }
    if settings.deploy == "local":
        resources["local_serving"] = LocalServing.for_settings(settings)
    if settings.deploy == "k8s":
        resources["kubernetes"] = KubernetesServing.for_settings(settings)
    if settings.image_registry:
        resources["images"] = ImageRegistry(registry=settings.image_registry, bentoml_home=str(settings.bentoml_home))
    return resources


def deployment_assets_for(settings: Settings) -> list[dg.AssetsDefinition]:
    """The bento whenever something consumes it; the image only with a registry to push it to (building one
    needs a Docker engine); the local server with MLPLATFORM_DEPLOY=local, the Kubernetes Deployment of the
    image with MLPLATFORM_DEPLOY=k8s (which needs the registry)."""
    chosen = []
    if settings.image_registry:
        chosen.append(deployment_assets.model_image)
    if settings.deploy == "local":
        chosen.append(deployment_assets.local_deployment)
    if settings.deploy == "k8s":
        chosen.append(deployment_assets.kubernetes_deployment)
    return [deployment_assets.prediction_bento, *chosen] if chosen else []


def job_config(settings: Settings) -> dict:
    """Every job's default run config: its events as JSON lines, and Dagster's console logger unless those
    lines go to stdout (MLPLATFORM_LOG_FORMAT=json, one format for a container's collector). Dagster fills in
    each logger a run's config leaves out, so a run naming its own loggers (the CLI's progress) keeps these."""
    loggers: dict = {JSON_LOGGER: {}}
    if settings.log_format == "text":
        loggers["console"] = {}
    return {"loggers": loggers}


def build_definitions(settings: Settings) -> dg.Definitions:
    # The spec shapes the graph (its freshness policies): a spec that cannot be used fails the code location
    # loudly, naming the file, field and value, rather than loading a graph that ignores it.
    spec = load_spec(settings.spec_path)
    # In-process locally: a process per step costs more than the steps themselves at small sizes. The
    # multiprocess executor (candidates tuned in parallel) forks each step from a server that has already
    # imported the code location, pandas and scikit-learn, rather than start a fresh interpreter per step
    # (measured: bench/README.md, "Measured without a script of their own").
    executor = dg.in_process_executor
    if settings.executor == "multiprocess":
        executor = dg.multiprocess_executor.configured(
            {"start_method": {"forkserver": {"preload_modules": ["mlplatform.definitions"]}}},
            name="multiprocess_forkserver",
        )
    elif settings.executor == "k8s":
        # Each step a Kubernetes Job of its own, in the run's image, namespace, service account, environment and
        # security context (the K8sRunLauncher's): a candidate search gets its pod, and the cores and memory the
        # spec's training.resources ask for (the dagster-k8s/config tags on its step).
        from dagster_k8s import k8s_job_executor

        executor = k8s_job_executor
    domains = [
        data_assets,
        quality_assets,
        feature_assets,
        training_assets,
        evaluation_assets,
        registry_assets,
        drift_monitoring,
        performance_monitoring,
    ]
    deployment = deployment_assets_for(settings)
    config = job_config(settings)
    deploy_jobs = []
    if deployment:
        deploy_jobs.append(
            dg.define_asset_job(
                DEPLOY_CHAMPION,
                selection=dg.AssetSelection.assets(*deployment),
                config=config,
                description="Build the current champion's bento again and deploy it (after a reboot, say).",
            )
        )
    ingest = dg.define_asset_job(
        INGEST_BATCH,
        selection=INGESTION,
        description="Validate the next batch and, if it passes, add it to the training data.",
        tags={PIPELINE_TAG: "ingest"},
        config=config,
    )
    train = dg.define_asset_job(
        TRAIN_AND_EVALUATE,
        selection=dg.AssetSelection.all() - INGESTION - MONITORING,
        description="Everything downstream of the accepted data: cleaning, features, candidates, the "
        "chosen model, its report, the registry, the promotion gate and the deployment.",
        tags={PIPELINE_TAG: "train"},
        config=config,
    )
    triggers = build_triggers(spec.automation, ingest=ingest, train=train, run_config=run_config)
    return dg.Definitions(
        assets=with_freshness(
            [*dg.load_assets_from_modules(domains), training_assets.candidate_models_for(spec.training), *deployment],
            spec.monitoring.freshness,
        ),
        asset_checks=dg.load_asset_checks_from_modules([quality_checks, registry_checks, drift_monitoring]),
        jobs=[
            *deploy_jobs,
            dg.define_asset_job(
                MATERIALIZE_ALL,
                selection=dg.AssetSelection.all() - MONITORING,
                description="Every asset, from ingestion to the champion and what serves it (monitoring has its "
                "own job).",
                config=config,
            ),
            ingest,
            train,
            dg.define_asset_job(
                PROMOTE_MODEL,
                selection=dg.AssetSelection.assets("champion_model").downstream() - MONITORING,
                config=config,
                description="Promote a stored model version, or roll back, by hand: set ops.champion_model.config "
                "(tag, rollback, reason, requested_by). What serves the champion is rebuilt and replaced.",
            ),
            dg.define_asset_job(
                MONITOR_JOB,
                selection=MONITORING,
                config=config,
                description="Compare what the champion serves with what it was trained on: drift of its inputs and "
                "predictions, and its live performance once labels land.",
            ),
            dg.define_asset_job(
                REPRODUCE_MODEL,
                selection=REPRODUCTION,
                config=config,
                description="Retrain from a recorded data version (ops.cleaned_data.config.data_version) and "
                "store the result beside the original, without promoting it.",
            ),
        ],
        sensors=[*triggers.sensors, monitor_sensor(spec.automation), *alert_sensors(settings)],
        schedules=triggers.schedules,
        resources=build_resources(settings),
        executor=executor,
        loggers={"console": dg.colored_console_logger, "progress": progress_logger, JSON_LOGGER: json_logger(settings)},
    )


def run_config(spec_path: Path, *, progress: bool = False) -> dict:
    """Run config naming the spec explicitly, so the run records which spec it used."""
    config: dict = {"resources": {"project": {"config": {"spec_path": str(spec_path)}}}}
    if progress:
        # The terminal gets the progress lines; the console logger, which the jobs' defaults add back, is
        # quieted rather than left to print every event a second time.
        config["loggers"] = {"progress": {}, "console": {"config": {"log_level": "CRITICAL"}}}
    return config


@dg.definitions
def defs() -> dg.Definitions:
    """The code location that `dg dev`, the webserver and the daemon load: the graph for this process's settings,
    built when Dagster asks for it, not when the module is imported."""
    return build_definitions(Settings.from_env())


def job(name: str, home: str, spec_path: str) -> dg.JobDefinition:
    """One of the jobs, for a command's settings, rebuilt in whichever process runs it: the home and spec the
    command was given travel as arguments; the rest of the settings is the environment the processes share."""
    return build_definitions(Settings.from_env(home=home, spec_path=spec_path)).resolve_job_def(name)


def reconstructable_job(name: str, settings: Settings):
    """The job ``name`` for these settings, as ``dagster.execute_job`` runs it (and rebuilds it in each step's
    process under the multiprocess executor). Refused under MLPLATFORM_EXECUTOR=k8s, whose steps are Kubernetes Jobs
    of a run that K8sRunLauncher started on the cluster: a command runs its jobs on this machine."""
    if settings.executor == "k8s":
        raise SettingsError(
            "MLPLATFORM_EXECUTOR=k8s runs each step as a Kubernetes Job of a run launched on the cluster "
            "(deploy/README.md, 'Dagster on Kubernetes'); a command runs its jobs on this machine: use in_process "
            "or multiprocess"
        )
    arguments = {"name": name, "home": str(settings.home), "spec_path": str(settings.spec_path)}
    return dg.build_reconstructable_job(__name__, "job", reconstructable_kwargs=arguments)
