"""The triggers, ticked by hand on a real Dagster instance (``build_sensor_context``) over real files: the new-data
sensor asks for one ingest run per batch content, the retraining sensor for one training run at a time, after the
cooldown, for the reason it names; the schedule exists when the spec names a cron, and the spec says which
trigger starts on."""

from __future__ import annotations

import contextvars
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mlplatform.cli import instance_config, opened_instance
from mlplatform.definitions import INGEST_BATCH, TRAIN_AND_EVALUATE, build_definitions
from mlplatform.defs.automation import REASON_TAG
from mlplatform.defs.automation.triggers import (
    BATCH_TAG,
    DATA_VERSION_TAG,
    FILE_TAG,
    NEW_DATA_SENSOR,
    PIPELINE_TAG,
    RETRAIN_REASON_TAG,
    RETRAIN_SCHEDULE,
    RETRAIN_SENSOR,
)
from mlplatform.defs.monitoring import DRIFT_ASSET, PERFORMANCE_ASSET, RETRAIN, RETRAIN_REASON
from mlplatform.lib.data.batches import content_id
from mlplatform.lib.data.ingest import IngestionError
from mlplatform.settings import Settings
from mlplatform_tests.conftest import BENTOML_HOME

# A run the daemon has created for a request and not yet launched (it is QUEUED once handed to the run queue,
# which needs the code location's origin that only a workspace has); the sensors treat both as waiting.
WAITING = dg.DagsterRunStatus.NOT_STARTED
ON = {"new_data": True, "retrain": True, "cooldown_minutes": 30}
# Slices of the bundled rows are the batches: their ranges differ too much for a profile learned from the first.
NO_PROFILE = {"profile": {"enabled": False}}


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A persistent instance configured by the project's dagster.yaml, as `mlplatform dev` sets one up (sensor
    contexts refuse an ephemeral one)."""
    folder = tmp_path / "dagster"
    folder.mkdir(parents=True)
    shutil.copyfile(instance_config(), folder / "dagster.yaml")
    with opened_instance(folder) as opened:
        yield opened


@pytest.fixture
def rows(penguins: pd.DataFrame) -> pd.DataFrame:
    """The bundled rows, shuffled: they come sorted by species, and a slice of one species trains nothing."""
    return penguins.sample(frac=1.0, random_state=0).reset_index(drop=True)


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    folder = tmp_path / "landing"
    folder.mkdir()
    return folder


def land(folder: Path, name: str, rows: pd.DataFrame) -> Path:
    path = folder / name
    path.write_bytes(rows.to_csv(index=False).encode())
    return path


def definitions_for(tmp_path: Path, write_spec, source: str, **automation: object) -> dg.Definitions:
    spec = write_spec(source={"uri": source}, automation={**ON, **automation}, quality=NO_PROFILE)
    environ = {
        "MLPLATFORM_HOME": str(tmp_path / "home"),
        "MLPLATFORM_SPEC": str(spec),
        "MLPLATFORM_DEPLOY": "none",
        "BENTOML_HOME": str(BENTOML_HOME),  # this process's, as every in-process registry of the tests
    }
    return build_definitions(Settings.from_env(environ))


def tick(defs: dg.Definitions, name: str, instance: dg.DagsterInstance, cursor: str | None = None):
    """One evaluation of the sensor ``name``: its run requests, skip reason and cursor."""
    repository = defs.get_repository_def()
    sensor = repository.get_sensor_def(name)
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, repository_def=repository, sensor_name=name, resources=defs.resources
    )
    result = sensor(context)
    if isinstance(result, dg.SensorResult):
        return list(result.run_requests or []), result.skip_reason, result.cursor
    if isinstance(result, dg.SkipReason):
        return [], result, cursor
    return [result], None, cursor


def execute(defs: dg.Definitions, request: dg.RunRequest, instance: dg.DagsterInstance, job: str = INGEST_BATCH):
    """Run what the sensor asked for, in this process, as the daemon would launch it."""
    result = defs.resolve_job_def(job).execute_in_process(
        run_config=request.run_config, tags=request.tags, instance=instance, raise_on_error=False
    )
    assert result.success, [event.message for event in result.all_events if event.is_failure]
    return result


def test_each_new_file_is_asked_for_once_oldest_name_first(tmp_path, write_spec, landing, rows, instance) -> None:
    paths = [land(landing, f"batch_{n}.csv", rows.iloc[n * 40 : (n + 1) * 40]) for n in (2, 0, 1)]
    defs = definitions_for(tmp_path, write_spec, str(landing))

    requests, skipped, cursor = tick(defs, NEW_DATA_SENSOR, instance)

    assert skipped is None
    ordered = sorted(paths)
    assert [r.run_config["ops"]["raw_batch"]["config"]["file"] for r in requests] == [str(p) for p in ordered]
    assert [r.run_key for r in requests] == [content_id(p.read_bytes()) for p in ordered]
    first = requests[0]
    assert first.tags[BATCH_TAG] == first.run_key and first.tags[FILE_TAG] == str(ordered[0])
    assert first.tags[REASON_TAG] == "new-data"
    assert first.run_config["resources"]["project"]["config"]["spec_path"] == str(tmp_path / "spec.yaml")
    # Asked for, not yet ingested: the next tick asks for nothing, and says why.
    again, skipped, cursor = tick(defs, NEW_DATA_SENSOR, instance, cursor)
    assert again == [] and "3 batch(es) wait" in skipped.skip_message
    assert set(json.loads(cursor)["requested"]) == {r.run_key for r in requests}


def test_the_ingest_runs_it_asks_for_accept_each_content_once(tmp_path, write_spec, landing, rows, instance) -> None:
    for n in range(2):
        land(landing, f"batch_{n}.csv", rows.iloc[n * 60 : (n + 1) * 60])
    defs = definitions_for(tmp_path, write_spec, str(landing))
    requests, _, cursor = tick(defs, NEW_DATA_SENSOR, instance)
    for request in requests:
        result = execute(defs, request, instance)
        assert result.dagster_run.tags[PIPELINE_TAG] == "ingest"  # the run queue's limit applies to it

    requests, skipped, cursor = tick(defs, NEW_DATA_SENSOR, instance, cursor)
    assert requests == [] and "no new batch" in skipped.skip_message
    assert json.loads(cursor)["requested"] == []

    # The same bytes dropped again under another name: already accepted, never asked for again.
    (landing / "batch_0_again.csv").write_bytes((landing / "batch_0.csv").read_bytes())
    # The same name with other bytes of the same size, rewritten a millisecond later: a new batch.
    changed = landing / "batch_1.csv"
    before = changed.stat()
    changed.write_bytes(changed.read_bytes().replace(b"Adelie", b"ADELIE"))
    os.utime(changed, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    requests, _, cursor = tick(defs, NEW_DATA_SENSOR, instance, cursor)
    assert [r.run_key for r in requests] == [content_id(changed.read_bytes())]
    execute(defs, requests[0], instance)
    assert tick(defs, NEW_DATA_SENSOR, instance, cursor)[0] == []


def test_a_restart_asks_for_the_same_keys_and_misses_no_file(tmp_path, write_spec, landing, rows, instance) -> None:
    """The daemon launches a run key once; a tick without the cursor (a reset, a lost tick) asks for the same
    keys again, and a file that landed while nothing looked is asked for at the next look."""
    land(landing, "a.csv", rows.iloc[:50])
    defs = definitions_for(tmp_path, write_spec, str(landing))
    first, _, _ = tick(defs, NEW_DATA_SENSOR, instance)
    land(landing, "b.csv", rows.iloc[50:100])

    after_restart, _, _ = tick(defs, NEW_DATA_SENSOR, instance, cursor=None)

    assert [r.run_key for r in after_restart] == [first[0].run_key, content_id((landing / "b.csv").read_bytes())]


def test_a_snapshot_file_is_a_new_batch_whenever_its_content_changes(tmp_path, write_spec, rows, instance) -> None:
    snapshot = tmp_path / "rows.csv"
    snapshot.write_bytes(rows.to_csv(index=False).encode())
    defs = definitions_for(tmp_path, write_spec, str(snapshot))
    version_a = snapshot.read_bytes()

    [request], _, cursor = tick(defs, NEW_DATA_SENSOR, instance)
    assert "ops" not in request.run_config  # the whole source is the batch
    assert request.tags[FILE_TAG] == str(snapshot)
    execute(defs, request, instance)
    assert tick(defs, NEW_DATA_SENSOR, instance, cursor)[0] == []

    snapshot.write_bytes(rows.iloc[:300].to_csv(index=False).encode())
    [changed], _, cursor = tick(defs, NEW_DATA_SENSOR, instance, cursor)
    assert changed.run_key != request.run_key
    execute(defs, changed, instance)

    snapshot.write_bytes(version_a)  # back to what it was: the training data changes back too
    [back], _, cursor = tick(defs, NEW_DATA_SENSOR, instance, cursor)
    assert back.tags[BATCH_TAG] == request.tags[BATCH_TAG] and back.run_key != request.run_key


def test_a_source_without_files_is_not_watched(tmp_path, write_spec, instance) -> None:
    defs = definitions_for(tmp_path, write_spec, "https://example.com/export.csv")
    requests, skipped, _ = tick(defs, NEW_DATA_SENSOR, instance)
    assert requests == [] and "http source has no files to watch" in skipped.skip_message


def test_a_missing_source_fails_the_tick_naming_it(tmp_path, write_spec, instance) -> None:
    defs = definitions_for(tmp_path, write_spec, str(tmp_path / "nowhere"))
    with pytest.raises(IngestionError, match="no such file or folder"):
        tick(defs, NEW_DATA_SENSOR, instance)


@pytest.mark.slow
def test_an_s3_prefix_is_watched_through_the_same_listing(tmp_path, write_spec, rows, s3_bucket, instance) -> None:
    first = s3_bucket.put("landing/a.csv", rows.iloc[:50].to_csv(index=False).encode())
    defs = definitions_for(tmp_path, write_spec, s3_bucket.uri("landing/"))

    [request], _, cursor = tick(defs, NEW_DATA_SENSOR, instance)
    assert request.tags[FILE_TAG].endswith("landing/a.csv")
    execute(defs, request, instance)
    s3_bucket.put("landing/b.csv", rows.iloc[50:100].to_csv(index=False).encode())
    [second], _, _ = tick(defs, NEW_DATA_SENSOR, instance, cursor)
    assert second.tags[FILE_TAG].endswith("landing/b.csv") and first


def start(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """What the run queue does when it launches a run: the run's start, as its worker reports it."""
    event = dg.DagsterEvent(event_type_value=dg.DagsterEventType.RUN_START.value, job_name=run.job_name)
    instance.report_dagster_event(event, run.run_id)


def submit(defs: dg.Definitions, request: dg.RunRequest, instance: dg.DagsterInstance) -> dg.DagsterRun:
    """What the daemon does with a sensor's request: a run of the job waiting to start, with its tags and the
    request's."""
    job = defs.resolve_job_def(TRAIN_AND_EVALUATE)
    tags = {**job.tags, **request.tags, "dagster/run_key": request.run_key}
    run = dg.DagsterRun(
        job_name=job.name, run_id=str(uuid.uuid4()), run_config=request.run_config, tags=tags, status=WAITING
    )
    return instance.add_run(run)


def ingest_all(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None = None) -> str | None:
    requests, _, cursor = tick(defs, NEW_DATA_SENSOR, instance, cursor)
    for request in requests:
        execute(defs, request, instance)
    return cursor


def accepted_version(instance: dg.DagsterInstance) -> str:
    event = instance.get_latest_materialization_event(dg.AssetKey("accepted_data"))
    return event.asset_materialization.metadata["data_version"].value


def test_accepted_data_asks_for_training_once(tmp_path, write_spec, landing, rows, instance) -> None:
    land(landing, "a.csv", rows.iloc[:150])
    defs = definitions_for(tmp_path, write_spec, str(landing))
    requests, skipped, _ = tick(defs, RETRAIN_SENSOR, instance)
    assert requests == [] and "nothing has asked" in skipped.skip_message
    ingest_all(defs, instance)

    [request], _, _ = tick(defs, RETRAIN_SENSOR, instance)

    assert request.tags[REASON_TAG] == "new-data"
    assert request.tags[DATA_VERSION_TAG] == accepted_version(instance)
    assert accepted_version(instance) in request.tags[RETRAIN_REASON_TAG]
    assert request.run_key == f"new-data:{accepted_version(instance)}|after:none"
    queued = submit(defs, request, instance)
    requests, skipped, _ = tick(defs, RETRAIN_SENSOR, instance)
    assert requests == [] and f"training run {queued.run_id} is queued" in skipped.skip_message


def test_a_finished_training_run_on_that_data_answers_it(tmp_path, write_spec, landing, rows, instance) -> None:
    land(landing, "a.csv", rows.iloc[:150])
    defs = definitions_for(tmp_path, write_spec, str(landing), cooldown_minutes=0)
    ingest_all(defs, instance)
    [request], _, _ = tick(defs, RETRAIN_SENSOR, instance)
    result = execute(defs, request, instance, job=TRAIN_AND_EVALUATE)  # trains, stores, promotes
    assert result.dagster_run.tags[PIPELINE_TAG] == "train"

    requests, skipped, _ = tick(defs, RETRAIN_SENSOR, instance)
    assert requests == [] and "nothing has asked" in skipped.skip_message


def test_twenty_files_in_a_minute_start_one_training_run_and_queue_at_most_one(
    tmp_path, write_spec, landing, rows, instance
) -> None:
    """Every batch is ingested by a real run, and between two the retraining sensor looks; the run queue starts
    the first training run it asked for. Even without a cooldown, one more run is asked for, to wait behind
    it, and no other (with the default cooldown of 30 minutes, not even that one: lib/automation tests)."""
    for n in range(20):
        land(landing, f"batch_{n:02}.csv", rows.iloc[n * 17 : (n + 1) * 17])
    defs = definitions_for(tmp_path, write_spec, str(landing), cooldown_minutes=0)
    ingests, _, _ = tick(defs, NEW_DATA_SENSOR, instance)
    assert len(ingests) == 20
    training: list[dg.DagsterRun] = []
    for ingest in ingests:
        execute(defs, ingest, instance)
        requests, _, _ = tick(defs, RETRAIN_SENSOR, instance)
        training += [submit(defs, request, instance) for request in requests]
        if len(training) == 1 and instance.get_run_by_id(training[0].run_id).status == WAITING:
            start(instance, training[0])
        statuses = [instance.get_run_by_id(run.run_id).status for run in training]
        assert statuses.count(WAITING) <= 1 and statuses.count(dg.DagsterRunStatus.STARTED) <= 1

    assert len(training) == 2, [run.tags for run in training]
    assert [instance.get_run_by_id(run.run_id).status for run in training] == [dg.DagsterRunStatus.STARTED, WAITING]
    assert all(run.tags[REASON_TAG] == "new-data" for run in training)


def test_the_project_instance_runs_one_ingest_or_training_run_at_a_time(tmp_path, write_spec, instance) -> None:
    defs = definitions_for(tmp_path, write_spec, str(tmp_path))
    limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    assert {"key": PIPELINE_TAG, "limit": 1} in limits
    for job in (INGEST_BATCH, TRAIN_AND_EVALUATE):
        assert PIPELINE_TAG in defs.resolve_job_def(job).tags


def test_the_cooldown_holds_back_the_next_automatic_run(tmp_path, write_spec, landing, rows, instance) -> None:
    land(landing, "a.csv", rows.iloc[:150])
    defs = definitions_for(tmp_path, write_spec, str(landing), cooldown_minutes=30)
    cursor = ingest_all(defs, instance)
    [request], _, _ = tick(defs, RETRAIN_SENSOR, instance)
    start(instance, submit(defs, request, instance))
    land(landing, "b.csv", rows.iloc[150:])
    ingest_all(defs, instance, cursor)

    requests, skipped, _ = tick(defs, RETRAIN_SENSOR, instance)

    assert requests == [] and skipped.skip_message.startswith("cooldown")
    assert accepted_version(instance) in skipped.skip_message  # what waits for the cooldown is said


def test_a_monitoring_report_that_asks_for_retraining_starts_one_with_its_reason(
    tmp_path, write_spec, landing, rows, instance
) -> None:
    land(landing, "a.csv", rows.iloc[:150])
    defs = definitions_for(tmp_path, write_spec, str(landing), cooldown_minutes=0)
    ingest_all(defs, instance)
    [request], _, _ = tick(defs, RETRAIN_SENSOR, instance)
    start(instance, submit(defs, request, instance))  # training on the new data has started

    instance.report_runless_asset_event(
        dg.AssetMaterialization(DRIFT_ASSET, metadata={RETRAIN: False, RETRAIN_REASON: ""})
    )
    assert tick(defs, RETRAIN_SENSOR, instance)[0] == []  # a report that does not ask changes nothing
    instance.report_runless_asset_event(
        dg.AssetMaterialization(PERFORMANCE_ASSET, metadata={RETRAIN: True, RETRAIN_REASON: "f1_macro fell 0.12"})
    )

    [decay], _, _ = tick(defs, RETRAIN_SENSOR, instance)

    assert decay.tags[REASON_TAG] == "decay"
    assert "f1_macro fell 0.12" in decay.tags[RETRAIN_REASON_TAG]
    assert DATA_VERSION_TAG not in decay.tags  # the new data already has its run


def test_the_spec_decides_which_trigger_starts_on(tmp_path, write_spec, landing) -> None:
    stopped = definitions_for(tmp_path, write_spec, str(landing), new_data=False, retrain=False, sensor_seconds=7)
    for name in (NEW_DATA_SENSOR, RETRAIN_SENSOR):
        sensor = stopped.get_repository_def().get_sensor_def(name)
        assert sensor.default_status == dg.DefaultSensorStatus.STOPPED and sensor.minimum_interval_seconds == 7
    assert not stopped.get_repository_def().schedule_defs  # no cron, no schedule

    running = definitions_for(tmp_path, write_spec, str(landing), retrain_cron="0 3 * * 1", timezone="Europe/Paris")
    for name in (NEW_DATA_SENSOR, RETRAIN_SENSOR):
        assert running.get_repository_def().get_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING
    schedule = running.get_repository_def().get_schedule_def(RETRAIN_SCHEDULE)
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 3 * * 1", "Europe/Paris")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING and schedule.job_name == TRAIN_AND_EVALUATE


def test_the_schedule_retrains_with_its_reason_unless_a_run_waits(tmp_path, write_spec, landing, instance) -> None:
    defs = definitions_for(tmp_path, write_spec, str(landing), retrain_cron="0 3 * * *", cooldown_minutes=0)
    repository = defs.get_repository_def()
    schedule = repository.get_schedule_def(RETRAIN_SCHEDULE)
    when = pd.Timestamp("2030-01-07 03:00", tz="UTC").to_pydatetime()

    def evaluate():
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=when, repository_def=repository, resources=defs.resources
        )
        # A schedule context opens its own instance from the ref and enters it, which in Dagster 1.13 leaves
        # that instance's definitions-state storage set for the thread after it is gone (every later test that
        # loads definitions would fail): evaluated in a copy of the context, nothing outlives the call.
        return contextvars.copy_context().run(schedule, context)

    request = evaluate()
    assert isinstance(request, dg.RunRequest)
    assert request.tags[REASON_TAG] == "schedule" and "0 3 * * *" in request.tags[RETRAIN_REASON_TAG]
    submit(defs, request, instance)
    skipped = evaluate()
    assert isinstance(skipped, dg.SkipReason) and "is queued" in skipped.skip_message
