"""Every benchmark, run at its smoke size as a user runs it: it must finish, compare its two sides, print its
ratio and leave nothing running. A bench that only runs by hand rots: `bench/quality.py --pipeline` crashed on
a changed summary line and left a `bentoml serve` behind, and nobody saw it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from bench import common
from bench.common import Target

# rollout and k8s_run need a Kubernetes cluster, Docker and a registry: the cluster tier (the local cluster)
ON_A_CLUSTER = [pytest.mark.slow, pytest.mark.cluster]
BENCHES = [
    "automation",
    "drift",
    "pipeline",
    "quality",
    "search",
    "serving",
    "threads",
    pytest.param("rollout", marks=ON_A_CLUSTER),
    pytest.param("k8s_run", marks=ON_A_CLUSTER),
]
CLUSTER_BENCHES = {"rollout", "k8s_run"}
SMOKE_SECONDS = 240  # each takes 10-60 s on 2 shared cores; far more means something hangs
# automation trains twice per side and starts the Dagster stack: about 2 minutes on 2 shared cores
LONGER = {"automation": 480, "rollout": 600}  # rollout: the graph with containerize, then 3 rollouts (~2 min)
LONGER["k8s_run"] = 1200  # the user-code image (cached layers), three Deployments, a 4-step run (~80 s when built)
RATIO_LINE = re.compile(r"^ratio .+: \d+\.\d+x", re.MULTILINE)


def processes_started_under(marker: str) -> list[psutil.Process]:
    """Processes whose TMPDIR is ``marker``: the bench and everything it started, wherever they were reparented
    (a `bentoml serve` runs in a session of its own). Other users' processes cannot be read and are not ours."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("TMPDIR") == marker:
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


@pytest.mark.parametrize("bench", BENCHES)
def test_bench_smoke(bench: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if bench in CLUSTER_BENCHES:  # the session's cluster, up for the tier (a bench leaves up what it found up)
        request.getfixturevalue("cluster_environment")
    marker = tmp_path / "tmp"  # every temporary folder of the bench and its children, and the mark of its processes
    marker.mkdir()
    prefixes = ("MLPLATFORM_", "DAGSTER_", "BENTOML_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    env |= {"TMPDIR": str(marker), "MLPLATFORM_DEPLOY": "none", "BENTOML_DO_NOT_TRACK": "true"}
    results = tmp_path / "results"
    command = [sys.executable, str(common.PROJECT_ROOT / "bench" / f"{bench}.py"), "--smoke", "--results", str(results)]
    try:
        done = subprocess.run(
            command,
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=LONGER.get(bench, SMOKE_SECONDS),
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"bench/{bench}.py --smoke exited {done.returncode}:\n{output[-4000:]}"
        assert RATIO_LINE.search(done.stdout), f"bench/{bench}.py printed no ratio line:\n{done.stdout[-4000:]}"
        assert list(results.glob(f"{bench}-*.json")), f"bench/{bench}.py saved no results in {results}"
        left = processes_started_under(str(marker))
        described = [" ".join(process.cmdline()[:6]) for process in left]
        assert not left, f"bench/{bench}.py left processes running: {described}"
    finally:
        for process in processes_started_under(str(marker)):
            process.kill()


def test_a_missed_target_fails_the_bench_outside_smoke_only(capsys) -> None:
    missed = Target("throughput bento ÷ FastAPI", 0.8, ">=", 1.0)
    assert common.verdict([missed], smoke=False) == common.EXIT_TARGET_MISSED
    assert "NOT MET: throughput bento ÷ FastAPI" in capsys.readouterr().out
    assert common.verdict([missed], smoke=True) == common.EXIT_OK
    met = Target("dagster ÷ plain", 1.06, "<=", 1.10)
    assert common.verdict([met], smoke=False) == common.EXIT_OK


def test_a_target_for_another_size_is_shown_and_never_enforced(capsys) -> None:
    smaller = Target("dagster ÷ plain", 1.46, "<=", 1.10, applies=False, condition="at 1,000,000 rows")
    assert common.verdict([smaller], smoke=False) == common.EXIT_OK
    assert "1.46 here, not under that condition" in capsys.readouterr().out
    unmeasured = Target("validate() share", None, "<=", 0.10)
    assert common.verdict([unmeasured], smoke=False) == common.EXIT_OK


def test_sides_that_did_different_work_fail_even_at_smoke_size() -> None:
    met = Target("dagster ÷ plain", 1.06, "<=", 1.10)
    different = ["344 rows, dagster run 1: logistic_regression {'f1_macro': (0.98, 0.97)}"]
    assert common.verdict([met], smoke=True, different_work=different) == common.EXIT_DIFFERENT_WORK
