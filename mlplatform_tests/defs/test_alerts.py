"""The alert sensors against a real instance and a real HTTP receiver: a failed run, a failed check and a
stale asset each arrive once, as Slack-compatible JSON with the run, asset, model tag and a link, and as a
JSON log line; nothing secret leaves; a receiver that fails never fails the sensor."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest

from mlplatform.definitions import INGEST_BATCH, MATERIALIZE_ALL, build_definitions, run_config
from mlplatform.defs.automation.alerts import CHECK_ALERTS, FRESHNESS_ALERTS, RUN_FAILURE_ALERTS
from mlplatform.settings import Settings
from mlplatform_tests.conftest import BENTOML_HOME
from mlplatform_tests.defs.test_models import STRONG, WEAK
from mlplatform_tests.servers import WebhookReceiver, free_port

TOKEN = "api-token-7f1e2d"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


@pytest.fixture
def persistent(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A SQLite instance, as the daemon's: a sensor evaluated tick by tick keeps its cursor in it."""
    (tmp_path / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))  # not `with`: see mlplatform.cli.instance
    try:
        yield instance
    finally:
        instance.dispose()


class Platform:
    """One home and instance; the spec, and so the graph, rewritten as a test needs."""

    def __init__(self, tmp_path: Path, write_spec, instance: dg.DagsterInstance, webhook: str | None) -> None:
        self.tmp_path, self.write_spec, self.instance = tmp_path, write_spec, instance
        environ = {"MLPLATFORM_HOME": str(tmp_path / "home"), "MLPLATFORM_DEPLOY": "none"}
        environ["BENTOML_HOME"] = str(BENTOML_HOME)  # this process's, as every in-process registry of the tests
        environ |= {"MLPLATFORM_API_TOKEN": TOKEN, "MLPLATFORM_UI_URL": "http://dagster.example:3000/"}
        if webhook:
            environ["MLPLATFORM_ALERT_WEBHOOK"] = webhook
        self.settings = Settings.from_env({**environ, "MLPLATFORM_SPEC": str(write_spec())})
        self.defs = build_definitions(self.settings)

    def with_spec(self, **sections) -> Platform:
        name = f"spec-{len(list(self.tmp_path.glob('spec-*')))}.yaml"
        self.settings = replace(self.settings, spec_path=self.write_spec(name, **sections))
        self.defs = build_definitions(self.settings)
        return self

    def run(self, job: str = MATERIALIZE_ALL) -> dg.ExecuteInProcessResult:
        return self.defs.resolve_job_def(job).execute_in_process(
            run_config=run_config(self.settings.spec_path), instance=self.instance, raise_on_error=False
        )

    def sensor(self, name: str) -> dg.SensorDefinition:
        return self.defs.resolve_sensor_def(name)

    def on_failure(self, result: dg.ExecuteInProcessResult) -> None:
        """Run the failure sensor's function on this run, as the daemon does when it sees the run fail."""
        run = self.instance.get_run_by_id(result.run_id)
        [failure] = [e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE"]
        context = dg.build_run_status_sensor_context(
            sensor_name=RUN_FAILURE_ALERTS, dagster_event=failure, dagster_instance=self.instance, dagster_run=run
        )
        self.sensor(RUN_FAILURE_ALERTS)(context.for_run_failure())

    def on_success(self, result: dg.ExecuteInProcessResult) -> None:
        run = self.instance.get_run_by_id(result.run_id)
        [success] = [e for e in result.all_events if e.event_type_value == "PIPELINE_SUCCESS"]
        context = dg.build_run_status_sensor_context(
            sensor_name=CHECK_ALERTS, dagster_event=success, dagster_instance=self.instance, dagster_run=run
        )
        self.sensor(CHECK_ALERTS)(context)

    def logged_alerts(self) -> list[dict]:
        lines = self.settings.log_path.read_text().splitlines() if self.settings.log_path.exists() else []
        return [line for line in map(json.loads, lines) if line["logger"] == "mlplatform.alerts"]


@pytest.fixture
def platform(tmp_path: Path, write_spec, instance: dg.DagsterInstance, receiver: WebhookReceiver) -> Platform:
    return Platform(tmp_path, write_spec, instance, receiver.url)


def fields_of(payload: dict) -> dict[str, str]:
    [fields] = [block for block in payload["blocks"] if "fields" in block]
    return {field["text"].split("\n")[0].strip("*"): field["text"].split("\n", 1)[1] for field in fields["fields"]}


def unreachable_source(platform: Platform) -> Platform:
    """A source whose URL carries credentials (as a database URL does) and answers nothing."""
    return platform.with_spec(source={"uri": f"http://ana:pa55word@127.0.0.1:{free_port()}/data.csv"})


def test_a_failed_run_sends_one_alert_with_its_run_asset_model_and_link(
    platform: Platform, receiver: WebhookReceiver
) -> None:
    trained = platform.with_spec(training={"candidates": STRONG}).run()
    champion = trained.asset_materializations_for_node("champion_model")[0].metadata["tag"].value
    failed = unreachable_source(platform).run(INGEST_BATCH)
    assert not failed.success

    platform.on_failure(failed)

    [payload] = receiver.received
    assert payload["text"].startswith("Run of ingest_batch failed at raw_batch\nraw_batch: IngestionError: ")
    assert fields_of(payload) == {
        "Run": failed.run_id,
        "Job": "ingest_batch",
        "Asset": "raw_batch",
        "Model": champion,  # nothing was trained: the champion that serves
        "Open in Dagster": f"<http://dagster.example:3000/runs/{failed.run_id}|"
        f"http://dagster.example:3000/runs/{failed.run_id}>",
    }
    sent = json.dumps(payload)
    assert "127.0.0.1" in sent and "pa55word" not in sent and "ana:***@" in sent  # the error, its password out
    assert TOKEN not in sent and receiver.url not in sent and "secret-path" not in sent
    [logged] = platform.logged_alerts()
    assert (logged["alert"], logged["level"], logged["run_id"], logged["asset"]) == (
        "run_failure",
        "ERROR",
        failed.run_id,
        "raw_batch",
    )
    assert (logged["model_tag"], logged["delivered"], logged["attempts"]) == (champion, True, 1)
    assert "pa55word" not in json.dumps(logged) and "secret-path" not in json.dumps(logged)


def test_a_batch_rejected_by_its_check_is_one_alert_not_two(platform: Platform, receiver: WebhookReceiver) -> None:
    """The run fails because its blocking check did: the check's alert says why; a second one for the run's
    failure would only repeat it."""
    platform.with_spec(quality={"columns": {"bill_length_mm": {"max": 1.0}}})
    rejected = platform.run(INGEST_BATCH)
    assert not rejected.success

    platform.on_failure(rejected)

    [payload] = receiver.received
    assert payload["text"].startswith("raw_batch: check raw_batch_is_valid did not pass\nbatch ")
    assert "bill_length_mm" in payload["text"]
    assert fields_of(payload)["Check"] == "raw_batch_is_valid" and fields_of(payload)["Run"] == rejected.run_id
    assert [line["alert"] for line in platform.logged_alerts()] == ["check_failed"]


def test_the_gate_keeping_the_champion_is_one_warning_and_a_promotion_none(
    platform: Platform, receiver: WebhookReceiver
) -> None:
    promoted = platform.with_spec(training={"candidates": STRONG}).run()
    platform.on_success(promoted)
    assert receiver.received == []  # every check passed: nothing to say

    kept = platform.with_spec(training={"candidates": WEAK}).run()
    assert kept.success
    platform.on_success(kept)

    [payload] = receiver.received
    challenger = kept.asset_materializations_for_node("challenger_model")[0].metadata["tag"].value
    assert payload["text"].startswith(
        "challenger_model: check challenger_beats_champion did not pass (warning: nothing was blocked)\n"
        "keep the champion: "
    )
    assert payload["blocks"][1]["text"]["text"].startswith(":warning: keep the champion")
    assert fields_of(payload)["Model"] == challenger  # the model the verdict is about
    [logged] = platform.logged_alerts()
    assert (logged["alert"], logged["level"], logged["model_tag"]) == ("check_failed", "WARNING", challenger)


def test_each_failure_alerts_exactly_once_across_ticks_and_a_restart(
    receiver: WebhookReceiver, write_spec, tmp_path: Path, persistent: dg.DagsterInstance
) -> None:
    """The sensor evaluated as the daemon does, tick after tick, its cursor kept in between; then rebuilt from
    scratch (a daemon restart) with the stored cursor."""
    instance = persistent
    platform = unreachable_source(Platform(tmp_path, write_spec, instance, receiver.url))
    repository = platform.defs.get_repository_def()

    def tick(sensor: dg.SensorDefinition, cursor: str | None) -> str | None:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=repository)
        return sensor.evaluate_tick(context).cursor

    sensor = platform.sensor(RUN_FAILURE_ALERTS)
    cursor = tick(sensor, None)  # the first tick starts from now: older failures are history
    first, second = platform.run(INGEST_BATCH), platform.run(INGEST_BATCH)
    cursor = tick(sensor, cursor)
    assert sorted(fields_of(p)["Run"] for p in receiver.received) == sorted([first.run_id, second.run_id])
    cursor = tick(sensor, cursor)
    assert len(receiver.received) == 2

    restarted = Platform(tmp_path, write_spec, instance, receiver.url)  # new objects, the same instance
    tick(restarted.sensor(RUN_FAILURE_ALERTS), cursor)
    assert len(receiver.received) == 2
    third = platform.run(INGEST_BATCH)
    tick(restarted.sensor(RUN_FAILURE_ALERTS), cursor)
    assert [fields_of(p)["Run"] for p in receiver.received[2:]] == [third.run_id]


def test_a_failing_webhook_never_fails_the_sensor(platform: Platform, tmp_path: Path, write_spec, instance) -> None:
    dead = f"http://127.0.0.1:{free_port()}/services/T000/B000/secret-path"
    platform = unreachable_source(Platform(tmp_path, write_spec, instance, dead))
    failed = platform.run(INGEST_BATCH)

    platform.on_failure(failed)  # returns: the receiver's failure is logged, not raised

    [logged] = platform.logged_alerts()
    assert (logged["delivered"], logged["attempts"], logged["status"]) == (False, 4, None)
    assert logged["error"] == "ConnectionError (no answer from the receiver)"
    assert "secret-path" not in json.dumps(logged)


def test_without_a_webhook_alerts_are_logged_only(tmp_path: Path, write_spec, instance) -> None:
    platform = unreachable_source(Platform(tmp_path, write_spec, instance, None))
    failed = platform.run(INGEST_BATCH)

    platform.on_failure(failed)

    [logged] = platform.logged_alerts()
    assert logged["run_id"] == failed.run_id and logged["delivered"] is None and logged["webhook"] == "not set"


def test_the_alert_sensors_start_running(platform: Platform) -> None:
    for name in (RUN_FAILURE_ALERTS, CHECK_ALERTS, FRESHNESS_ALERTS):
        assert platform.sensor(name).default_status == dg.DefaultSensorStatus.RUNNING


def report_freshness(instance: dg.DagsterInstance, asset: str, state: str) -> None:
    """What Dagster's freshness daemon records when an asset's state changes. The event class is not exported
    by Dagster; the daemon itself runs in the slow test (mlplatform_tests/test_alerts_daemon.py)."""
    from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange

    instance.report_runless_asset_event(
        FreshnessStateChange(
            key=dg.AssetKey(asset),
            new_state=FreshnessState(state),
            previous_state=FreshnessState.UNKNOWN,
            state_change_timestamp=time.time(),
        )
    )


def test_a_freshness_breach_alerts_once_and_again_only_after_a_recovery(
    receiver: WebhookReceiver, write_spec, tmp_path: Path, persistent: dg.DagsterInstance
) -> None:
    instance = persistent
    platform = Platform(tmp_path, write_spec, instance, receiver.url)
    platform.with_spec(monitoring={"freshness": {"accepted_data_hours": 2, "champion_hours": 24}})
    repository = platform.defs.get_repository_def()
    sensor = platform.sensor(FRESHNESS_ALERTS)

    def tick(cursor: str | None) -> str | None:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=repository)
        return sensor.evaluate_tick(context).cursor

    report_freshness(instance, "accepted_data", "WARN")
    cursor = tick(None)
    assert receiver.received == []  # a warning shows in the UI; only a breach alerts
    report_freshness(instance, "accepted_data", "FAIL")
    cursor = tick(cursor)
    cursor = tick(cursor)
    [payload] = receiver.received
    assert payload["text"].startswith("accepted_data is stale\naccepted_data failed its freshness policy at ")
    assert "never materialized, expected within 2:00:00" in payload["text"]
    assert fields_of(payload)["Open in Dagster"].startswith("<http://dagster.example:3000/assets/accepted_data|")

    report_freshness(instance, "accepted_data", "PASS")
    cursor = tick(cursor)
    report_freshness(instance, "accepted_data", "FAIL")
    tick(cursor)
    assert len(receiver.received) == 2
