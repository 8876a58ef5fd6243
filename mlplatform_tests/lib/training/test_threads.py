"""Threads per fit: the cores this process may use (affinity, a cgroup v2 or v1 quota), shared among the searches
running side by side, one thread on small data."""

import os
from pathlib import Path

import pytest

from mlplatform.lib.training import threads
from mlplatform.resources import Compute

LARGE = threads.ONE_THREAD_BELOW_ROWS * 5
SMALL = threads.ONE_THREAD_BELOW_ROWS // 5
AFFINITY = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("rows", "concurrent", "cores", "expected"),
    [
        (LARGE, 1, 8, 8),  # one search at a time (in-process): every core
        (LARGE, 2, 8, 4),  # two steps side by side: half each
        (LARGE, 3, 8, 2),  # three steps: 2 each, 6 of 8 cores busy, never 9 threads
        (LARGE, 3, 2, 1),
        (LARGE, 10_000, 2, 1),
        (SMALL, 1, 8, 1),  # small data: one thread wins (bench/threads.py)
        (SMALL, 2, 8, 1),
        (threads.ONE_THREAD_BELOW_ROWS, 1, 2, 2),
    ],
)
def test_threads_per_fit_by_situation(rows: int, concurrent: int, cores: int, expected: int) -> None:
    chosen = threads.threads_per_fit(rows, concurrent, cores=cores)

    assert chosen == expected
    assert chosen * min(concurrent, cores) <= cores


@pytest.mark.parametrize(
    ("cpu_max", "quota"),
    [("150000 100000\n", 1), ("400000 100000\n", 4), ("50000 100000\n", 1), ("max 100000\n", None)],
)
def test_a_cgroup_quota_caps_the_usable_cores(tmp_path: Path, cpu_max: str, quota: int | None) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)

    assert threads.quota_cores(path) == quota
    assert threads.usable_cores(cpu_max=path) == (min(AFFINITY, quota) if quota else AFFINITY)


def test_no_quota_file_means_the_affinity(tmp_path: Path) -> None:
    assert threads.usable_cores(cpu_max=tmp_path / "absent") == AFFINITY


def test_a_malformed_quota_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cpu.max"
    path.write_text("lots 100000")
    with pytest.raises(ValueError, match=r"cpu.max: expected '<quota> <period>'"):
        threads.quota_cores(path)


def test_the_quota_read_is_this_process_own_cgroup(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/elsewhere\n0::/kubepods/pod-1/container\n")

    assert threads.own_cpu_max(tmp_path / "fs", proc) == tmp_path / "fs" / "kubepods/pod-1/container/cpu.max"


@pytest.mark.parametrize(("quota_us", "cores"), [("50000", 1), ("400000", 4), ("-1", None)])
def test_a_cgroup_v1_quota_caps_the_usable_cores(tmp_path: Path, quota_us: str, cores: int | None) -> None:
    """A pod's CPU limit on a cgroup v1 node (500m: 50000 of every 100000 microseconds) is its CFS quota."""
    (tmp_path / "cpu.cfs_quota_us").write_text(f"{quota_us}\n")
    (tmp_path / "cpu.cfs_period_us").write_text("100000\n")

    assert threads.cfs_quota_cores(tmp_path) == cores
    assert threads.usable_cores(cfs_dir=tmp_path) == (min(AFFINITY, cores) if cores else AFFINITY)
    assert threads.usable_cores(cpu_max=tmp_path / "absent", cfs_dir=tmp_path) == threads.usable_cores(cfs_dir=tmp_path)


def test_a_malformed_v1_quota_names_the_folder(tmp_path: Path) -> None:
    (tmp_path / "cpu.cfs_quota_us").write_text("lots")
    (tmp_path / "cpu.cfs_period_us").write_text("100000")
    with pytest.raises(ValueError, match=rf"{tmp_path}: expected whole microseconds"):
        threads.cfs_quota_cores(tmp_path)


def test_the_v1_quota_read_is_this_process_own_cgroup_or_the_container_view(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/elsewhere\n2:cpu,cpuacct:/kubepods/pod-1/container\n0::/\n")
    own = tmp_path / "fs" / "cpu" / "kubepods/pod-1/container"

    assert threads.own_cfs_dir(tmp_path / "fs", proc) == tmp_path / "fs" / "cpu"  # a container: its own is the root
    own.mkdir(parents=True)
    (own / "cpu.cfs_quota_us").write_text("-1")
    assert threads.own_cfs_dir(tmp_path / "fs", proc) == own


@pytest.mark.parametrize("parallel_steps", [False, True])
def test_every_step_gets_a_deliberate_thread_count(parallel_steps: bool) -> None:
    compute = Compute(parallel_steps=parallel_steps)
    cores = threads.usable_cores()

    assert compute.threads(concurrent_steps=3, training_rows=SMALL) == 1
    expected = threads.threads_per_fit(LARGE, 3) if parallel_steps else cores
    assert compute.threads(concurrent_steps=3, training_rows=LARGE) == expected
