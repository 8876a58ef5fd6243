"""Alerts with the real daemon (slow): ``mlplatform dev`` running, a webhook receiver in this test. A run
that fails sends exactly one webhook; accepted data that goes stale sends exactly one; restarting the whole
stack (webserver, daemon, code server) resends neither."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlplatform.definitions import INGEST_BATCH
from mlplatform.defs.automation.alerts import CHECK_ALERTS, FRESHNESS_ALERTS, RUN_FAILURE_ALERTS
from mlplatform_tests.servers import WebhookReceiver
from mlplatform_tests.servers_dagster import (
    dagster_dev,
    launch_job,
    wait_for_code_location,
    wait_for_run_end,
    wait_for_ticks,
)

pytestmark = pytest.mark.slow
ALERT_SENSORS = (RUN_FAILURE_ALERTS, CHECK_ALERTS, FRESHNESS_ALERTS)


def test_a_failed_run_and_stale_data_alert_exactly_once_even_across_a_restart(
    tmp_path: Path, penguins: pd.DataFrame
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    penguins.to_csv(landing / "001.csv", index=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "penguins",
                "problem": {"task": "classification", "target": "species"},
                "source": {"uri": str(landing)},
                # stale one minute after the batch is accepted: the shortest window Dagster keeps
                "monitoring": {"freshness": {"accepted_data_hours": 1 / 60}},
            }
        )
    )
    home = tmp_path / "home"
    with WebhookReceiver() as receiver:
        environment = {
            "MLPLATFORM_SPEC": str(spec),
            "MLPLATFORM_ALERT_WEBHOOK": receiver.url,
            "FRESHNESS_DAEMON_INTERVAL_SECONDS": "5",  # Dagster's freshness daemon: every 30 s by default
        }
        with dagster_dev(home, environment=environment) as servers:
            wait_for_code_location(servers)
            accepted = launch_job(servers, INGEST_BATCH)
            assert wait_for_run_end(servers, accepted) == "SUCCESS"
            (landing / "002.csv").write_bytes(b"\x00\xff\xfe garbage, not a table \x00" * 10)
            failed = launch_job(servers, INGEST_BATCH)
            assert wait_for_run_end(servers, failed) == "FAILURE"

            [run_alert, stale_alert] = sorted(receiver.wait_for(2, timeout=240), key=lambda p: p["text"])
            assert run_alert["text"].startswith("Run of ingest_batch failed at raw_batch\n"), run_alert["text"]
            assert failed in str(run_alert["blocks"]) and "QuarantinedBatch" in run_alert["text"]
            assert stale_alert["text"].startswith("accepted_data is stale\n"), stale_alert["text"]
            assert "expected within 0:01:00" in stale_alert["text"]
            alerted = time.time()
            for sensor in ALERT_SENSORS:  # each looked again from its cursor, and said nothing more
                wait_for_ticks(servers, sensor, count=1, after=alerted)
            assert len(receiver.received) == 2

        restarted = time.time()
        with dagster_dev(home, environment=environment) as servers:
            wait_for_code_location(servers)
            for sensor in ALERT_SENSORS:
                wait_for_ticks(servers, sensor, count=1, after=restarted)
            assert len(receiver.received) == 2  # nothing resent from the cursors kept in the instance

    lines = (home / "logs" / "mlplatform.jsonl").read_text().splitlines()
    logged = [line for line in lines if '"logger":"mlplatform.alerts"' in line]
    assert len(logged) == 2 and all('"delivered":true' in line for line in logged)
    assert any(f'"run_id":"{failed}"' in line and '"logger":"mlplatform.run"' in line for line in lines)
