"""Runs as processes: the multiprocess executor (a process per candidate), and a run killed with SIGKILL in
the middle of a candidate's step, then re-executed from the failure, leaving no half-written artifact."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import joblib
import pandas as pd
import pytest
import yaml

from mlplatform.cli import opened_instance
from mlplatform.lib.registry.registry import Registry
from mlplatform.resources.model_store import BentoMLStore
from mlplatform_tests.conftest import BENTOML_HOME, EXAMPLE_CSV
from mlplatform_tests.test_cli import mlplatform

TRAINING = "train_and_evaluate"


def write_spec(folder: Path, candidates: dict) -> Path:
    document = {
        "name": "penguins",
        "problem": {"task": "classification", "target": "species", "drop_columns": ["year"]},
        "source": {"uri": str(EXAMPLE_CSV)},
        "training": {"candidates": candidates},
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def environment(home: Path, spec: Path, **settings: str) -> dict[str, str]:
    """The settings `mlplatform run --home` uses, as environment values, for scripts of our own; their models go to
    the session's BentoML home, the one this process's registry reads (``read_every_model``)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MLPLATFORM_", "DAGSTER_", "BENTOML_"))}
    return environ | {
        "MLPLATFORM_HOME": str(home),
        "MLPLATFORM_SPEC": str(spec),
        "MLPLATFORM_DEPLOY": "none",
        "DAGSTER_HOME": str(home / "dagster"),
        "BENTOML_HOME": str(BENTOML_HOME),
        "BENTOML_DO_NOT_TRACK": "true",
        "PYTHONUNBUFFERED": "1",
        **settings,
    }


def instance_of(home: Path):
    """The home's instance, open for a block (not ``with DagsterInstance``: see mlplatform.cli.opened_instance)."""
    return opened_instance(home / "dagster")


def step_events(
    instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType
) -> dict[str, dg.DagsterEvent]:
    return {
        record.dagster_event.step_key: record.dagster_event for record in instance.all_logs(run_id, of_type=event_type)
    }


def the_training_run(instance: dg.DagsterInstance) -> dg.DagsterRun:
    [run] = instance.get_runs(filters=dg.RunsFilter(job_name=TRAINING))
    return run


@pytest.mark.slow
def test_the_multiprocess_executor_tunes_each_candidate_in_a_process_of_its_own(tmp_path: Path) -> None:
    candidates = {
        "linear": {"estimator": "logistic_regression", "trials": 1},
        "forest": {"estimator": "random_forest", "trials": 1, "params": {"n_estimators": 20}},
    }
    write_spec(tmp_path, candidates)

    done = mlplatform("run", "--spec", "spec.yaml", "--home", "state", cwd=tmp_path, MLPLATFORM_EXECUTOR="multiprocess")

    assert done.returncode == 0, done.stdout + done.stderr
    with instance_of(tmp_path / "state") as instance:
        run = the_training_run(instance)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        started = step_events(instance, run.run_id, dg.DagsterEventType.STEP_START)
        succeeded = step_events(instance, run.run_id, dg.DagsterEventType.STEP_SUCCESS)
        [orchestrator] = [
            r.dagster_event.pid for r in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START)
        ]
    steps = [f"candidate_models.tune_candidate[{name}]" for name in candidates]
    assert set(steps) <= set(succeeded)
    pids = {started[step].pid for step in steps}
    assert len(pids) == 2 and orchestrator not in pids  # each candidate in its own process, not the run's


def read_every_artifact(home: Path) -> list[Path]:
    """Every value the IO manager stored reads back whole; no temporary file of write_atomically is left."""
    artifacts = home / "artifacts"
    assert sorted(artifacts.rglob("*.partial")) == []
    stored = sorted(artifacts.rglob("*.parquet")) + sorted(artifacts.rglob("*.joblib"))
    for path in stored:
        pd.read_parquet(path) if path.suffix == ".parquet" else joblib.load(path)
    return stored


def read_every_model(home: Path) -> list[str]:
    """Every version in the model store loads, and nothing else is in the store (no half-written version)."""
    registry = Registry(BentoMLStore(BENTOML_HOME), str(home / "artifacts"), "penguins")
    tags = [version.tag for version in registry.versions()]
    for tag in tags:
        assert registry.load(tag).model.pipeline is not None
    folders = BENTOML_HOME / "models" / "penguins"
    on_disk = {path.name for path in folders.iterdir() if path.is_dir()} if folders.exists() else set()
    assert on_disk == {tag.split(":")[1] for tag in tags}
    return tags


def wait_for_line(process: subprocess.Popen, wanted: str, seconds: float) -> list[str]:
    """The process's stdout up to the first line holding ``wanted`` (read by a thread: readline blocks)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            raise AssertionError(f"the run ended before {wanted!r}:\n{''.join(seen)}")
        seen.append(line)
        if wanted in line:
            return seen
    raise AssertionError(f"no {wanted!r} within {seconds} s:\n{''.join(seen)}")


REEXECUTE_FROM_FAILURE = """
import sys

import dagster as dg

from mlplatform import definitions
from mlplatform.settings import Settings

with dg.DagsterInstance.get() as instance:
    parent = instance.get_run_by_id(sys.argv[1])
    result = dg.execute_job(
        definitions.reconstructable_job(definitions.TRAIN_AND_EVALUATE, Settings.from_env()),
        instance=instance,
        run_config=parent.run_config,
        tags={**parent.tags, "mlplatform/launched_by": "pytest"},
        reexecution_options=dg.ReexecutionOptions.from_failure(parent.run_id, instance),
    )
    print(result.run_id)
    sys.exit(0 if result.success else 1)
"""


@pytest.mark.slow
def test_a_run_killed_mid_step_is_re_executed_from_the_failure_leaving_nothing_half_written(tmp_path: Path) -> None:
    # Each fit is 2,000 trees on one thread (about 2 s here, idle): the step lasts over ten seconds whatever the
    # machine's load, so a kill a second after it starts lands inside it. (300 trees finished within that
    # second on an idle machine, and the test then found the step done.)
    slow = {"estimator": "random_forest", "trials": 2, "params": {"n_estimators": 2000}}
    spec = write_spec(tmp_path, {"quick": {"estimator": "logistic_regression", "trials": 1}, "slow": slow})
    home = tmp_path / "state"
    environ = environment(home, spec)
    command = [sys.executable, "-m", "mlplatform.cli", "run", "--spec", str(spec), "--home", str(home)]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_line(process, "candidate_models.tune_candidate[slow] started", seconds=300)
        time.sleep(1)  # well inside the step's first trial
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL

    # Without a daemon to notice, the run stays STARTED, and only a failed (or canceled) run can be re-executed:
    # an operator marks it failed, as the daemon's run monitoring would.
    with instance_of(home) as instance:
        killed = the_training_run(instance)
        assert killed.status == dg.DagsterRunStatus.STARTED
        assert "candidate_models.tune_candidate[slow]" not in step_events(
            instance, killed.run_id, dg.DagsterEventType.STEP_SUCCESS
        )
        before_kill = set(step_events(instance, killed.run_id, dg.DagsterEventType.STEP_SUCCESS))
        instance.report_run_failed(killed, "the run's process was killed (SIGKILL) in a candidate's step")
        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
    read_every_artifact(home)
    assert read_every_model(home) == []  # killed before the registry: nothing, not half of something

    started = time.monotonic()
    again = subprocess.run(
        [sys.executable, "-c", REEXECUTE_FROM_FAILURE, killed.run_id],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    print(f"re-execution from failure: {time.monotonic() - started:.1f} s")

    with instance_of(home) as instance:
        rerun = instance.get_run_by_id(again.stdout.split()[-1])
        assert rerun.status == dg.DagsterRunStatus.SUCCESS and rerun.parent_run_id == killed.run_id
        redone = set(step_events(instance, rerun.run_id, dg.DagsterEventType.STEP_SUCCESS))
    assert "candidate_models.tune_candidate[slow]" in redone and "trained_model" in redone
    assert "cleaned_data" in before_kill and not before_kill & redone  # what had finished was not done again
    stored = read_every_artifact(home)
    assert home / "artifacts" / "assets" / "trained_model.joblib" in stored
    [tag] = read_every_model(home)
    registry = Registry(BentoMLStore(BENTOML_HOME), str(home / "artifacts"), "penguins")
    assert registry.champion().tag == tag
    assert registry.version(tag).labels["dagster_run_id"] == rerun.run_id
