"""The production instance (deploy/dagster.yaml) against a real PostgreSQL started here and moto's S3 server:
``mlplatform run`` and the daemon's sensors record their runs, events and ticks in the database, and the steps'
logs land in the bucket, encrypted. Everything is read back from where it landed (SQL on Postgres, S3's
listing), not from what the commands printed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

# The stored tick's type: importing it registers it for deserialization (Dagster exports no public tick reader
# that works without knowing the sensor's origin and selector ids).
from dagster._core.scheduler.instigation import TickData, TickStatus

from mlplatform_tests.conftest import EXAMPLE_CSV
from mlplatform_tests.servers import PostgresServer, S3Bucket, S3Server, running_postgres
from mlplatform_tests.servers_dagster import dagster_dev, wait_for_code_location, wait_until
from mlplatform_tests.system import postgres_bin_dir
from mlplatform_tests.test_cli import mlplatform
from mlplatform_tests.test_deploy_instance import PRODUCTION_CONFIG

pytestmark = pytest.mark.slow

LOG_PREFIX = "dagster/compute-logs"
SENSOR_SECONDS = 5


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with running_postgres(postgres_bin_dir()) as server:
        yield server


def production_environment(postgres: PostgresServer, bucket: S3Bucket, config_dir: Path) -> dict[str, str]:
    """What a deployment sets: the instance's file, the database (a new one), the step logs' bucket and prefix,
    and the AWS environment (here pointing at moto's server)."""
    return {
        "MLPLATFORM_DAGSTER_CONFIG": str(PRODUCTION_CONFIG),
        **postgres.environment(postgres.create_database()),
        "DAGSTER_COMPUTE_LOG_BUCKET": bucket.name,
        "DAGSTER_COMPUTE_LOG_PREFIX": LOG_PREFIX,
        **bucket.server.environment(config_dir),
    }


def rows(postgres: PostgresServer, database: str, query: str, *parameters: object) -> list[tuple]:
    with postgres.connect(database) as connection:
        return connection.execute(query, parameters or None).fetchall()


def test_a_full_run_is_recorded_in_postgres_with_its_step_logs_in_s3(
    postgres: PostgresServer, s3_server: S3Server, write_spec, tmp_path: Path
) -> None:
    bucket = S3Bucket.create(s3_server)
    environment = production_environment(postgres, bucket, tmp_path)
    database = environment["DAGSTER_PG_DB"]
    spec = write_spec()

    done = mlplatform("run", "--spec", str(spec), "--home", "state", cwd=tmp_path, **environment)

    assert done.returncode == 0, done.stdout + done.stderr
    printed = re.search(r"^2 run\(s\) done: (\S+), (\S+)", done.stdout, re.MULTILINE)
    assert printed, done.stdout
    runs = dict(rows(postgres, database, "SELECT run_id, pipeline_name || ' ' || status FROM runs"))
    assert runs == {
        printed[1]: "ingest_batch SUCCESS",
        printed[2]: "train_and_evaluate SUCCESS",
    }
    materialized = {
        tuple(json.loads(key))
        for (key,) in rows(
            postgres, database, "SELECT asset_key FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
        )
    }
    for asset in ("raw_batch", "accepted_data", "trained_model", "evaluation_report", "champion_model"):
        assert (asset,) in materialized, f"no materialization of {asset} in Postgres: {sorted(materialized)}"
    events = dict(rows(postgres, database, "SELECT run_id, count(*) FROM event_logs GROUP BY run_id"))
    assert set(events) >= set(runs), f"runs without events in Postgres: {set(runs) - set(events)}"
    # Nothing of the instance stayed on local disk: no SQLite storage beside the installed dagster.yaml.
    instance_dir = tmp_path / "state" / "dagster"
    assert (instance_dir / "dagster.yaml").read_bytes() == PRODUCTION_CONFIG.read_bytes()
    assert not list(instance_dir.rglob("*.db")), list(instance_dir.rglob("*.db"))

    client = s3_server.client()
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=bucket.name).get("Contents", [])]
    assert keys, "no step log in the bucket"
    assert all(key.startswith(f"{LOG_PREFIX}/") for key in keys), keys
    # The run's steps print their progress; in one process a run's steps share one captured log per stream.
    step_logs = []
    for run_id, step in ((printed[1], "raw_batch"), (printed[2], "trained_model")):
        logs = [key for key in keys if f"/{run_id}/" in key]
        assert logs, f"no step log of run {run_id} in {keys}"
        text = b"".join(client.get_object(Bucket=bucket.name, Key=key)["Body"].read() for key in logs).decode()
        assert re.search(rf"^  \d\d:\d\d:\d\d  {step} +done in", text, re.MULTILINE), f"{step} not in {logs}:\n{text}"
        step_logs.append(text)
    unencrypted = [
        key for key in keys if client.head_object(Bucket=bucket.name, Key=key).get("ServerSideEncryption") != "AES256"
    ]
    assert not unencrypted, f"step logs written without server-side encryption: {unencrypted}"
    assert_password_not_stored(
        postgres, database, environment["DAGSTER_PG_PASSWORD"], [done.stdout, done.stderr, *step_logs]
    )


def assert_password_not_stored(postgres: PostgresServer, database: str, password: str, texts: list[str]) -> None:
    """The database password is read from the environment where it is needed, and written nowhere: not in the
    runs (whose stored body carries the instance's config to the processes that execute them), events, tags,
    ticks, nor in ``texts`` (the command's output, the servers' log, the step logs)."""
    for table, column in (
        ("runs", "run_body"),
        ("event_logs", "event"),
        ("run_tags", "value"),
        ("job_ticks", "tick_body"),
    ):
        found = rows(postgres, database, f"SELECT count(*) FROM {table} WHERE strpos({column}, %s) > 0", password)
        assert found == [(0,)], f"the database password is stored in {table}.{column}"
    assert not [text for text in texts if password in text], "the database password is in the output or logs"


def test_the_daemon_records_a_sensor_tick_and_its_run_in_postgres(
    postgres: PostgresServer, s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = S3Bucket.create(s3_server)
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "batch_000.csv").write_bytes(EXAMPLE_CSV.read_bytes())
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "penguins",
                "problem": {"task": "classification", "target": "species", "drop_columns": ["year"]},
                "source": {"uri": str(landing)},
                "automation": {"new_data": True, "sensor_seconds": SENSOR_SECONDS},
            }
        )
    )
    environment = {"MLPLATFORM_SPEC": str(spec), **production_environment(postgres, bucket, tmp_path)}
    database = environment["DAGSTER_PG_DB"]

    def ticks() -> list[TickData]:
        return [
            dg.deserialize_value(body, TickData)
            for (body,) in rows(postgres, database, "SELECT tick_body FROM job_ticks")
        ]

    def ingest_runs() -> dict[str, str]:
        return dict(rows(postgres, database, "SELECT run_id, status FROM runs WHERE pipeline_name = 'ingest_batch'"))

    with dagster_dev(tmp_path / "home", environment=environment) as servers:
        wait_for_code_location(servers)
        requested = wait_until(
            "a new_data tick that requested a run, in Postgres",
            servers,
            lambda: next((tick for tick in ticks() if tick.instigator_name == "new_data" and tick.run_ids), None),
        )
        run_id = requested.run_ids[0]
        wait_until(
            f"ingest run {run_id} finished, in Postgres",
            servers,
            lambda: ingest_runs().get(run_id) in ("SUCCESS", "FAILURE", "CANCELED") or None,
        )

    assert requested.status == TickStatus.SUCCESS, requested
    assert ingest_runs() == {run_id: "SUCCESS"}
    tagged = rows(
        postgres, database, "SELECT value FROM run_tags WHERE run_id = %s AND key = 'dagster/sensor_name'", run_id
    )
    assert tagged == [("new_data",)]
    keys = [item["Key"] for item in s3_server.client().list_objects_v2(Bucket=bucket.name).get("Contents", [])]
    assert any(run_id in key for key in keys), f"no step log of the sensor's run {run_id} in {keys}"
    assert_password_not_stored(postgres, database, environment["DAGSTER_PG_PASSWORD"], [servers.log_path.read_text()])
