"""The triggers: a sensor on the source that ingests each new batch, a sensor that retrains once data was accepted
or a monitoring report asks for it, and a cron schedule for retraining. Every code location has them (the
schedule when the spec names a cron), each on or off as the spec's ``automation`` section says and switchable
in the UI; what they decide is in ``mlplatform.lib.automation``.

Retraining is a sensor rather than an ``AutomationCondition`` on the training assets: it must keep a cooldown
between runs, leave at most one run waiting, say in the run's tags why it started, and act on reports from
monitoring that are not upstream of what it trains. Conditions have none of that, and would launch runs of
their own choosing instead of the ``train_and_evaluate`` job.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
from dagster_aws.s3 import S3Resource

from mlplatform.defs.automation import REASON_TAG
from mlplatform.defs.data.assets import NOTHING_NEW
from mlplatform.defs.data.batches import ledger
from mlplatform.defs.monitoring import DRIFT_ASSET, PERFORMANCE_ASSET, RETRAIN, RETRAIN_REASON
from mlplatform.lib.automation import arrivals, retraining
from mlplatform.lib.spec import Automation
from mlplatform.resources import ArtifactStore, ProjectSpecResource
from mlplatform.resources.object_storage import list_source_files

NEW_DATA_SENSOR = "new_data"
RETRAIN_SENSOR = "retrain"
RETRAIN_SCHEDULE = "retrain_schedule"
# On every ingest and training run: the run queue runs one of them at a time (dagster.yaml), so batches join
# the training data in the order they landed, and no model is trained while the data it reads is changing.
PIPELINE_TAG = "mlplatform/pipeline"
RETRAIN_REASON_TAG = "mlplatform/retrain_reason"
DATA_VERSION_TAG = "mlplatform/data_version"
LAUNCHED_BY_TAG = "mlplatform/launched_by"
BATCH_TAG, FILE_TAG = "mlplatform/batch", "mlplatform/file"  # as `mlplatform run` tags its ingest runs
WAITING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]
_MONITORS = ((DRIFT_ASSET, retraining.DRIFT), (PERFORMANCE_ASSET, retraining.DECAY))


@dataclass(frozen=True)
class Triggers:
    sensors: list[dg.SensorDefinition]
    schedules: list[dg.ScheduleDefinition]


def build_triggers(
    automation: Automation,
    *,
    ingest: dg.JobDefinition,
    train: dg.JobDefinition,
    run_config: Callable[[str], dict],
) -> Triggers:
    """The triggers for a spec's ``automation`` section: ``ingest`` runs one batch, ``train`` trains on the
    accepted data, ``run_config`` names a spec file in a run's config."""

    def status(on: bool) -> dg.DefaultSensorStatus:
        return dg.DefaultSensorStatus.RUNNING if on else dg.DefaultSensorStatus.STOPPED

    @dg.sensor(
        name=NEW_DATA_SENSOR,
        job=ingest,
        minimum_interval_seconds=automation.sensor_seconds,
        default_status=status(automation.new_data),
        description="Ingests each new batch of the spec's source (a folder, an S3 prefix, a snapshot file) in a "
        "run of its own, oldest first; the same content never twice.",
    )
    def new_data(
        context: dg.SensorEvaluationContext, project: ProjectSpecResource, artifacts: ArtifactStore, s3: S3Resource
    ) -> dg.SensorResult:
        spec = project.load()
        if spec.source.kind not in arrivals.WATCHED_KINDS:
            return dg.SensorResult(
                skip_reason=f"a {spec.source.kind} source has no files to watch: run {ingest.name} yourself, or "
                "on a schedule of your own",
            )
        # An S3 prefix is listed through dagster-aws's client (credentials from boto's chain, never the spec).
        files = list_source_files(s3.get_client(), spec) if spec.source.kind == "s3" else None
        pending = arrivals.pending_batches(spec, ledger(artifacts), files)
        requested = json.loads(context.cursor)["requested"] if context.cursor else []
        new, still_pending = arrivals.to_request(pending, requested)
        cursor = json.dumps({"requested": still_pending})
        if not new:
            waiting = f"{len(pending)} batch(es) wait for the runs already requested" if pending else "no new batch"
            return dg.SensorResult(skip_reason=f"{waiting} in {spec.source.uri}", cursor=cursor)
        context.log.info(f"New batch(es) in {spec.source.uri}: {', '.join(batch.name for batch in new)}")
        requests = [ingest_request(batch, project.spec_path, run_config) for batch in new]
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    def training_decision(instance: dg.DagsterInstance, project: ProjectSpecResource, signals: list):
        cooldown = project.load().automation.cooldown_minutes * 60  # read each tick: no reload to change it
        return retraining.decide(signals, training_runs(instance, train.name), cooldown)

    @dg.sensor(
        name=RETRAIN_SENSOR,
        job=train,
        minimum_interval_seconds=automation.sensor_seconds,
        default_status=status(automation.retrain),
        description="Retrains once a batch was accepted, or when drift or live performance asks for it; at most "
        "one run waiting, automation.cooldown_minutes between starts.",
    )
    def retrain(context: dg.SensorEvaluationContext, project: ProjectSpecResource) -> dg.RunRequest | dg.SkipReason:
        decision = training_decision(context.instance, project, retrain_signals(context.instance))
        if decision.skip:
            return dg.SkipReason(decision.skip)
        context.log.info(f"Retraining ({decision.reason}): {decision.detail}")
        return training_request(decision, project.spec_path, run_config, launched_by="sensor")

    schedules = []
    if automation.retrain_cron:

        @dg.schedule(
            name=RETRAIN_SCHEDULE,
            job=train,
            cron_schedule=automation.retrain_cron,
            execution_timezone=automation.timezone,
            default_status=dg.DefaultScheduleStatus.RUNNING,  # named in the spec: on
            description=f"Retrains at '{automation.retrain_cron}' ({automation.timezone}), unless a training run "
            "is queued or the cooldown has not passed.",
        )
        def retrain_schedule(
            context: dg.ScheduleEvaluationContext, project: ProjectSpecResource
        ) -> dg.RunRequest | dg.SkipReason:
            scheduled = context.scheduled_execution_time
            detail = f"schedule {automation.retrain_cron} ({automation.timezone}) at {scheduled.isoformat()}"
            signal = retraining.Signal(retraining.SCHEDULE, scheduled.isoformat(), scheduled.timestamp(), detail)
            decision = training_decision(context.instance, project, [signal])
            if decision.skip:
                return dg.SkipReason(decision.skip)
            return training_request(decision, project.spec_path, run_config, launched_by="schedule")

        schedules.append(retrain_schedule)
    return Triggers(sensors=[new_data, retrain], schedules=schedules)


def ingest_request(batch: arrivals.PendingBatch, spec_path: str, run_config: Callable[[str], dict]) -> dg.RunRequest:
    """The ingest run for one batch: its file in the run's config, the batch and the file in its tags."""
    config = run_config(spec_path)
    if batch.file:
        config = {**config, "ops": {"raw_batch": {"config": {"file": batch.file}}}}
    tags = {
        BATCH_TAG: batch.batch_id,
        FILE_TAG: batch.file or batch.name,
        REASON_TAG: retraining.NEW_DATA,
        LAUNCHED_BY_TAG: "sensor",
        "mlplatform/spec": spec_path,
    }
    return dg.RunRequest(run_key=batch.run_key, run_config=config, tags=tags)


def training_request(
    decision: retraining.Decision, spec_path: str, run_config: Callable[[str], dict], launched_by: str
) -> dg.RunRequest:
    tags = {
        REASON_TAG: decision.reason,
        RETRAIN_REASON_TAG: decision.detail[:1000],
        LAUNCHED_BY_TAG: launched_by,
        "mlplatform/spec": spec_path,
    }
    versions = [signal.key for signal in decision.signals if signal.reason == retraining.NEW_DATA]
    if versions:
        tags[DATA_VERSION_TAG] = versions[0]
    return dg.RunRequest(run_key=decision.run_key, run_config=run_config(spec_path), tags=tags)


def retrain_signals(instance: dg.DagsterInstance) -> list[retraining.Signal]:
    """What asks for training now: accepted data no model was trained on yet, and the latest drift and live
    performance reports when they say to retrain."""
    signals = []
    accepted = _latest_materialization(instance, "accepted_data")
    if accepted is not None:
        version = str(_metadata(accepted)["data_version"])
        if version not in _trained_versions(instance):
            detail = f"data version {version} was accepted (run {accepted.run_id})"
            signals.append(retraining.Signal(retraining.NEW_DATA, version, accepted.timestamp, detail))
    for asset, reason in _MONITORS:
        report = _latest_materialization(instance, asset)
        if report is None:
            continue
        metadata = _metadata(report)
        if metadata.get(RETRAIN) is True:
            why = metadata.get(RETRAIN_REASON) or "it asks for retraining"
            signals.append(retraining.Signal(reason, str(report.storage_id), report.timestamp, f"{asset}: {why}"))
    return signals


def training_runs(instance: dg.DagsterInstance, job_name: str) -> list[retraining.TrainingRun]:
    """The training runs that decide the next one: any waiting, the latest few, and the latest automatic one."""
    automatic = dg.RunsFilter(job_name=job_name, tags={REASON_TAG: list(retraining.PRECEDENCE)})
    records = [
        *instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=WAITING)),
        *instance.get_run_records(dg.RunsFilter(job_name=job_name), limit=10),
        *instance.get_run_records(automatic, limit=1),
    ]
    unique = {record.dagster_run.run_id: record for record in records}
    return [
        retraining.TrainingRun(
            run_id=run_id,
            automatic=REASON_TAG in record.dagster_run.tags,
            waiting=record.dagster_run.status in WAITING,
            created_at=record.create_timestamp.timestamp(),
            started_at=record.start_time,
        )
        for run_id, record in unique.items()
    ]


def _latest_materialization(instance: dg.DagsterInstance, asset: str) -> dg.EventLogRecord | None:
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
    return records[0] if records else None


def _metadata(record: dg.EventLogRecord) -> dict[str, object]:
    event = record.asset_materialization or record.asset_observation
    return {key: getattr(value, "value", value) for key, value in event.metadata.items()}


def _trained_versions(instance: dg.DagsterInstance) -> set[str]:
    """The data versions the latest training runs cleaned, or found a stored model already trained on."""
    cleaned = dg.AssetKey("cleaned_data")
    found = set()
    for record in [
        *instance.fetch_materializations(cleaned, limit=1).records,
        *instance.fetch_observations(cleaned, limit=1).records,
    ]:
        metadata = _metadata(record)
        if "data_version" in metadata and (record.asset_materialization or NOTHING_NEW in metadata):
            found.add(str(metadata["data_version"]))
    return found
