"""deploy/dagster.yaml, read by Dagster's own instance-config loader (no server needed): valid, every address
and secret from the environment, the local instance's queue rule kept. test_postgres_instance.py runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config

from mlplatform.cli import _settings, instance_config

PRODUCTION_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"


def production_config() -> dict:
    config, custom_instance_class = dagster_instance_config(str(PRODUCTION_CONFIG.parent), PRODUCTION_CONFIG.name)
    assert custom_instance_class is None
    return dict(config)


def test_every_address_and_secret_comes_from_the_environment() -> None:
    config = production_config()
    database = config["storage"]["postgres"]["postgres_db"]
    literal = {key: value for key, value in database.items() if not (isinstance(value, dict) and "env" in value)}
    assert literal == {"scheme": "postgresql+psycopg2"}, f"literal database settings in {PRODUCTION_CONFIG}"
    assert {"hostname", "port", "db_name", "username", "password"} <= set(database)
    logs = config["compute_logs"]
    assert (logs["module"], logs["class"]) == ("dagster_aws.s3.compute_log_manager", "S3ComputeLogManager")
    assert logs["config"]["bucket"] == {"env": "DAGSTER_COMPUTE_LOG_BUCKET"}
    assert logs["config"]["prefix"] == {"env": "DAGSTER_COMPUTE_LOG_PREFIX"}
    assert logs["config"]["upload_extra_args"] == {"ServerSideEncryption": "AES256"}
    assert config["telemetry"] == {"enabled": False}


def test_the_local_queue_rule_and_retention_hold_in_production() -> None:
    local = yaml.safe_load(instance_config().read_text())
    config = production_config()
    assert config["run_queue"]["tag_concurrency_limits"] == local["run_queue"]["tag_concurrency_limits"]
    assert config["retention"] == local["retention"]


def test_mlplatform_dagster_config_is_the_file_the_commands_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPLATFORM_DAGSTER_CONFIG", str(PRODUCTION_CONFIG))
    settings = _settings(tmp_path / "home", None)
    assert (settings.dagster_home / "dagster.yaml").read_bytes() == PRODUCTION_CONFIG.read_bytes()

    monkeypatch.delenv("MLPLATFORM_DAGSTER_CONFIG")
    settings = _settings(tmp_path / "home", None)
    assert (settings.dagster_home / "dagster.yaml").read_bytes() == instance_config().read_bytes()
