"""The ``mlplatform`` command as a user types it, in a subprocess, with its state under tmp_path."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest
from sklearn.datasets import load_wine

from mlplatform_tests.servers import free_port


def mlplatform(*args: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """The command in a shell as a user has it: none of our settings, and no BENTOML_HOME (this session's), so
    that ``--home`` holds the models too."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MLPLATFORM_", "DAGSTER_", "BENTOML_HOME"))}
    environ["MLPLATFORM_DEPLOY"] = "none"  # unless a test serves, on a port of its own (3001 may be taken)
    environ |= settings
    return subprocess.run(
        [sys.executable, "-m", "mlplatform.cli", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_check_spec_accepts_the_bundled_example(tmp_path: Path) -> None:
    from mlplatform.lib.spec import default_spec_path

    done = mlplatform("check-spec", str(default_spec_path()), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "classification of 'species', optimising f1_macro" in done.stdout
    assert "k8s       2 pod(s), 2-4 at 70% CPU; 250m/512Mi requested, 1/1Gi limit; ClusterIP" in done.stdout


def test_check_spec_shows_a_candidates_own_pod(tmp_path: Path) -> None:
    spec = tmp_path / "pod.yaml"
    spec.write_text(
        "name: demo\nproblem: {task: classification, target: y}\nsource: {uri: data.csv}\n"
        "training:\n  candidates:\n    linear: {estimator: logistic_regression}\n"
        "    boosted: {estimator: hist_gradient_boosting, resources: {pod: {cpu: 2, memory: 4Gi, gpu: 1}}}\n"
    )
    done = mlplatform("check-spec", str(spec), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "linear (logistic_regression, 10 trials), " in done.stdout
    assert "boosted (hist_gradient_boosting, 10 trials, in its own pod: the platform's image, 2 CPU, 4Gi, 1 GPU)" in (
        done.stdout
    )


def test_check_spec_names_the_field_and_value(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: demo\nproblem: {task: clasification, target: y}\nsource: {uri: 'ftp://host/x.csv'}\n")
    done = mlplatform("check-spec", str(spec), cwd=tmp_path)
    assert done.returncode == 2
    assert "problem.task" in done.stderr and "'clasification'" in done.stderr
    assert "source.uri" in done.stderr and "'ftp'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_run_trains_a_users_own_csv_with_another_target(tmp_path: Path) -> None:
    wine = load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    wine["cultivar"] = wine["cultivar"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    (tmp_path / "data").mkdir()
    wine.to_csv(tmp_path / "data" / "wine.csv", index=False)
    (tmp_path / "wine.yaml").write_text(
        "name: wine\n"
        "problem: {task: classification, target: cultivar, metric: balanced_accuracy}\n"
        "source: {uri: data/wine.csv}\n"
    )

    done = mlplatform("run", "--spec", "wine.yaml", "--home", "state", cwd=tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "training data 178 rows from 1 accepted batch(es)" in done.stdout
    assert "balanced_accuracy" in done.stdout and "<- optimised" in done.stdout
    for step in (
        "raw_batch",
        "accepted_data",
        "cleaned_data",
        "data_split",
        "feature_pipeline",
        "trained_model",
        "evaluation_report",
    ):
        # the step's own progress line, not any step's: "  14:02:11  cleaned_data         done in 0.4 s"
        assert re.search(rf"^  \d\d:\d\d:\d\d  {step} +done in \d+\.\d s$", done.stdout, re.MULTILINE), step
    # The UI command it prints opens this run's home and spec (test_commands.py: the rest of it works pasted).
    assert " dev --home state --spec wine.yaml     (then http://127.0.0.1:3000)" in done.stdout
    assert (tmp_path / "state" / "dagster" / "dagster.yaml").is_file()
    assert list((tmp_path / "state" / "artifacts" / "reports" / "wine").glob("*/report.md"))
    assert not (tmp_path / ".mlplatform").exists()


@pytest.mark.slow
def test_run_fails_clearly_on_an_unreachable_source(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(
        "name: gone\nproblem: {task: regression, target: y}\nsource: {uri: 'http://127.0.0.1:9/data.csv'}\n"
    )
    done = mlplatform("run", "--spec", "spec.yaml", "--home", "state", cwd=tmp_path)
    assert done.returncode == 1
    assert "raw_batch: IngestionError: source.uri 'http://127.0.0.1:9/data.csv': unreachable" in done.stderr
    assert "Traceback" not in done.stderr


def test_synth_writes_the_example_schema(tmp_path: Path) -> None:
    done = mlplatform("synth", "--rows", "1000", "--out", "big.parquet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    frame = pd.read_parquet(tmp_path / "big.parquet")
    example = pd.read_csv(Path(__file__).parent.parent / "mlplatform" / "examples" / "penguins.csv")
    assert list(frame.columns) == list(example.columns) and len(frame) == 1000


@pytest.mark.slow
def test_run_serves_the_champion_and_serve_manages_the_server(tmp_path: Path) -> None:
    """The quick start as a user lives it: `run` ends with a server answering; `serve --stop` stops it and
    `serve` brings the champion back, with the same token."""
    serving = {"MLPLATFORM_DEPLOY": "local", "MLPLATFORM_SERVE_PORT": str(free_port())}
    url = f"http://127.0.0.1:{serving['MLPLATFORM_SERVE_PORT']}"
    try:
        done = mlplatform("run", "--home", "state", cwd=tmp_path, **serving)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"serving       {url} serves penguins:" in done.stdout
        command = done.stdout[done.stdout.index("curl ") : done.stdout.index("  artifacts")]
        answered = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert '"prediction":' in answered.stdout, answered.stdout + answered.stderr  # the printed curl works

        stopped = mlplatform("serve", "--stop", "--home", "state", cwd=tmp_path, **serving)
        assert stopped.returncode == 0 and f"{url} stopped penguins:" in stopped.stdout, stopped.stderr
        status = mlplatform("serve", "--status", "--home", "state", cwd=tmp_path, **serving)
        assert "nothing serves" in status.stdout
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/readyz")

        again = mlplatform("serve", "--home", "state", cwd=tmp_path, **serving)
        assert again.returncode == 0, again.stdout + again.stderr
        assert f"serving       {url} serves penguins:" in again.stdout
        token = (tmp_path / "state" / "deployment" / "token").read_text()
        assert httpx.get(f"{url}/readyz").status_code == 200
        assert httpx.post(f"{url}/predict", json={}, headers={"Authorization": f"Bearer {token}"}).status_code == 400
        bentos = tmp_path / "state" / "bentoml" / "bentos" / "predictor"
        assert len([path for path in bentos.iterdir() if path.is_dir()]) == 1  # `serve` reused the run's bento

        shutil.rmtree(tmp_path / "state")  # server.json and the token gone: the server is found from its port
        stopped = mlplatform("serve", "--stop", "--home", "state", cwd=tmp_path, **serving)
        assert stopped.returncode == 0 and f"{url} stopped" in stopped.stdout, stopped.stdout + stopped.stderr
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/readyz")
    finally:
        mlplatform("serve", "--stop", "--home", "state", cwd=tmp_path, **serving)


def stored_versions(home: Path) -> list[str]:
    return sorted(path.name for path in (home / "bentoml" / "models" / "penguins").iterdir() if path.is_dir())


@pytest.mark.slow
def test_run_on_unchanged_data_trains_nothing_and_says_so(tmp_path: Path) -> None:
    first = mlplatform("run", "--home", "state", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    stored = stored_versions(tmp_path / "state")

    again = mlplatform("run", "--home", "state", cwd=tmp_path)

    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("nothing new: penguins:") == 1, again.stdout
    assert "training and evaluating" not in again.stdout  # no training run was even launched
    assert stored_versions(tmp_path / "state") == stored  # and no copy of the model was stored


@pytest.mark.slow
def test_run_exit_codes_for_a_folder_of_batches(tmp_path: Path, penguins: pd.DataFrame) -> None:
    """A rejected batch has its own exit code; a folder with nothing new says so, without Dagster's warnings
    about checks that emitted no result, and trains nothing."""
    landing = tmp_path / "landing"
    landing.mkdir()
    penguins.iloc[:200].to_csv(landing / "001.csv", index=False)
    (tmp_path / "spec.yaml").write_text(
        "name: penguins\nproblem: {task: classification, target: species}\nsource: {uri: landing/}\n"
    )
    first = mlplatform("run", "--spec", "spec.yaml", "--home", "state", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr

    penguins.iloc[200:260].drop(columns=["island"]).to_csv(landing / "002.csv", index=False)
    rejected = mlplatform("run", "--spec", "spec.yaml", "--home", "state", cwd=tmp_path)
    assert rejected.returncode == 4, rejected.stdout + rejected.stderr
    assert "column 'island'" in rejected.stderr and "quarantine" in rejected.stderr
    assert "nothing new: penguins:" in rejected.stdout  # the accepted data did not change: no retraining
    assert not (landing / "002.csv").exists()

    quiet = mlplatform("run", "--spec", "spec.yaml", "--home", "state", cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert "no new batch in landing/" in quiet.stdout and "nothing new: penguins:" in quiet.stdout
    assert "emitted no result" not in quiet.stdout + quiet.stderr
    assert len(stored_versions(tmp_path / "state")) == 1


def test_help_lists_the_exit_codes(tmp_path: Path) -> None:
    done = mlplatform("run", "--help", cwd=tmp_path)
    assert done.returncode == 0
    for code in ("0  done", "1  something broke", "2  a spec", "3  the model was trained", "4  a batch was rejected"):
        assert code in done.stdout


def test_serve_without_a_local_deployment_is_refused_as_bad_input(tmp_path: Path) -> None:
    done = mlplatform("serve", "--status", "--home", "state", cwd=tmp_path)  # MLPLATFORM_DEPLOY=none

    assert done.returncode == 2
    assert done.stderr == "error: MLPLATFORM_DEPLOY=none: there is no local deployment to manage\n"


def test_run_with_the_kubernetes_executor_is_refused_as_bad_input(tmp_path: Path) -> None:
    done = mlplatform("run", "--home", "state", cwd=tmp_path, MLPLATFORM_EXECUTOR="k8s")

    assert done.returncode == 2
    assert done.stderr.startswith("error: MLPLATFORM_EXECUTOR=k8s runs each step as a Kubernetes Job"), done.stderr
    assert not (tmp_path / "state" / "artifacts").exists()


@pytest.mark.slow
def test_the_hint_after_a_lost_gate_promotes_when_pasted(tmp_path: Path, penguins: pd.DataFrame) -> None:
    """A model that loses the gate ends with `promote it by hand: <command>`; pasted into the same shell, with
    the run's own home and spec, that command makes it the champion."""
    penguins.to_csv(tmp_path / "penguins.csv", index=False)
    spec = "name: penguins\nproblem: {task: classification, target: species}\nsource: {uri: penguins.csv}\n"
    (tmp_path / "spec.yaml").write_text(spec)
    first = mlplatform("run", "--spec", "spec.yaml", "--home", "state", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    weak = "{estimator: logistic_regression, trials: 1, search: {C: {choices: [0.0001]}}}"
    (tmp_path / "spec.yaml").write_text(f"{spec}training: {{candidates: {{weak: {weak}}}}}\n")
    lost = mlplatform("run", "--spec", "spec.yaml", "--home", "state", cwd=tmp_path)
    assert lost.returncode == 3, lost.stdout + lost.stderr

    [hint] = [line.split("promote it by hand: ", 1)[1] for line in lost.stdout.splitlines() if "by hand: " in line]
    assert "--home state --spec spec.yaml" in hint, hint
    challenger = hint.split(" promote ", 1)[1].split()[0]
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MLPLATFORM_", "DAGSTER_", "BENTOML_HOME"))}
    pasted = subprocess.run(
        ["bash", "-c", hint],
        cwd=tmp_path,
        env=environ | {"MLPLATFORM_DEPLOY": "none", "UV_NO_SYNC": "1", "UV_FROZEN": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pasted.returncode == 0, f"{hint!r}: {pasted.stdout}{pasted.stderr}"
    assert f"champion is now {challenger}" in pasted.stdout
