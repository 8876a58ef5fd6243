"""The structured log: a run's events as JSON lines under the home (and on stdout for containers), each with
its run id, step, asset and model tag."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import dagster as dg
import pytest

from mlplatform.definitions import INGEST_BATCH, MATERIALIZE_ALL, build_definitions, run_config
from mlplatform.lib.logs import JsonFormatter
from mlplatform.settings import Settings, SettingsError
from mlplatform_tests.conftest import BENTOML_HOME


def settings_for(tmp_path: Path, spec: Path, **environ: str) -> Settings:
    environ = {"MLPLATFORM_HOME": str(tmp_path / "home"), "MLPLATFORM_DEPLOY": "none", **environ}
    environ.setdefault("BENTOML_HOME", str(BENTOML_HOME))  # this process's, as every in-process registry's
    return Settings.from_env({"MLPLATFORM_SPEC": str(spec), **environ})


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_run_writes_one_json_line_per_event_with_its_context(tmp_path: Path, write_spec) -> None:
    settings = settings_for(tmp_path, write_spec())
    job = build_definitions(settings).resolve_job_def(MATERIALIZE_ALL)

    result = job.execute_in_process(run_config=run_config(settings.spec_path), instance=dg.DagsterInstance.ephemeral())

    assert result.success
    lines = read_lines(settings.log_path)
    logged_events = [line for line in lines if line["event"]]
    assert len(logged_events) == len(result.all_events)  # every event of the run, once
    for line in lines:
        assert {"time", "level", "logger", "message", "run_id", "job", "step", "asset", "model_tag"} <= set(line)
        assert line["run_id"] == result.run_id and line["job"] == MATERIALIZE_ALL
        assert line["level"] in ("DEBUG", "INFO", "WARNING", "ERROR") and line["message"]
    materialized = {line["asset"] for line in lines if line["event"] == "ASSET_MATERIALIZATION"}
    assert materialized == {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    # a message an asset logs names its step and asset; the model tag is known once the model is stored
    [stored] = [line for line in lines if line["message"].startswith("Stored penguins:")]
    assert (stored["step"], stored["asset"], stored["level"]) == ("challenger_model", "challenger_model", "INFO")
    champion = result.asset_materializations_for_node("champion_model")[0].metadata["tag"].value
    [promoted] = [line for line in lines if line["message"].startswith("Champion is now")]
    assert promoted["model_tag"] == champion and promoted["asset"] == "champion_model"
    gate = [line for line in lines if line["event"] == "ASSET_CHECK_EVALUATION" and line["step"].startswith("chall")]
    assert [line["asset"] for line in gate] == ["challenger_model"]  # a check's line names the asset it checks
    # the steps of a graph asset name it too: each candidate's tuning step is part of candidate_models
    tuning = [line for line in lines if (line["step"] or "").startswith("candidate_models.tune_candidate[")]
    assert tuning and {line["asset"] for line in tuning} == {"candidate_models"}

    again = job.execute_in_process(run_config=run_config(settings.spec_path), instance=dg.DagsterInstance.ephemeral())
    later = read_lines(settings.log_path)[len(lines) :]  # appended, never rewritten
    assert later and {line["run_id"] for line in later} == {again.run_id}


def test_json_format_prints_the_lines_on_stdout_beside_the_command_s_progress(
    tmp_path: Path, write_spec, capfd: pytest.CaptureFixture
) -> None:
    """MLPLATFORM_LOG_FORMAT=json, as in a container: the same lines on stdout, and no console logger's text
    lines; a run naming its own loggers (the CLI's progress) keeps the JSON logger the jobs start with."""
    settings = settings_for(tmp_path, write_spec(), MLPLATFORM_LOG_FORMAT="json")
    job = build_definitions(settings).resolve_job_def(INGEST_BATCH)

    result = job.execute_in_process(
        run_config=run_config(settings.spec_path, progress=True), instance=dg.DagsterInstance.ephemeral()
    )

    assert result.success
    out, err = capfd.readouterr()
    printed = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert printed == read_lines(settings.log_path)
    assert any(line.lstrip().split()[1:2] == ["raw_batch"] for line in out.splitlines() if not line.startswith("{"))
    assert " - STEP_START - " not in out + err  # the console logger's format


def test_the_formatter_writes_extra_fields_and_errors() -> None:
    record = logging.LogRecord("mlplatform.x", logging.ERROR, __file__, 1, "failed %s", ("twice",), None)
    record.model_tag = "penguins:abc"
    try:
        raise ValueError("the cause")
    except ValueError:
        record.exc_info = sys.exc_info()

    line = json.loads(JsonFormatter().format(record))

    assert line["message"] == "failed twice" and line["level"] == "ERROR" and line["logger"] == "mlplatform.x"
    assert line["model_tag"] == "penguins:abc" and line["run_id"] is None
    assert "ValueError: the cause" in line["error"]


def test_an_unknown_log_format_is_named() -> None:
    with pytest.raises(SettingsError, match="MLPLATFORM_LOG_FORMAT='xml'"):
        Settings.from_env({"MLPLATFORM_LOG_FORMAT": "xml"})
