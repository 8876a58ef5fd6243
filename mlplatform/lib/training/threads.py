"""How many threads one fit of a search may use: the cores this process may really run on (its CPU affinity and
a cgroup CPU quota: v2, or v1's CFS quota), shared among the steps that search side by side, and a single
thread on small data.

Cross-validation runs its folds one after another (``candidates`` checks the time cap before each fold), so
the threads of one fit are all the threads a search uses: folds in parallel x threads per fit never exceeds
the share."""

from __future__ import annotations

import os
from pathlib import Path

# Below this many training rows every fit gets one thread, whatever the cores: there two threads gained at most
# 1.2x with a free core and lost up to 15x without one (bench/threads.py; bench/README.md, "threads.py"). OpenMP's
# threads spin at every barrier waiting for the one that lost its core, and a small fit is mostly barriers.
# Above it a fit gets the step's share of the cores: they paid where nothing else wanted them, and the steps
# that run beside it are already counted; other people's work on the same cores is not, and costs as above.
ONE_THREAD_BELOW_ROWS = 20_000

CGROUP_ROOT = Path("/sys/fs/cgroup")


def own_cpu_max(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> Path:
    """This process's cgroup v2 ``cpu.max`` file (it may not exist: no cgroup v2, or no CPU controller)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return cgroup_root / "cpu.max"
    own = next((line.split("::", 1)[1] for line in lines if line.startswith("0::")), "/")
    return cgroup_root / own.lstrip("/") / "cpu.max"


def quota_cores(cpu_max: Path) -> int | None:
    """Whole cores a cgroup v2 ``cpu.max`` ("<quota> <period>" in microseconds, or "max <period>") allows;
    None without a quota. Rounded down, at least one: threads beyond the quota only wait to be throttled."""
    try:
        fields = cpu_max.read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError as exc:
        raise ValueError(f"{cpu_max}: expected '<quota> <period>' or 'max <period>', got {' '.join(fields)!r}") from exc
    return max(1, quota // period)


def own_cfs_dir(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> Path:
    """This process's cgroup v1 CPU controller folder (``cpu.cfs_quota_us``): its own path under the ``cpu``
    hierarchy, or that hierarchy's root, which is what a container sees of its own cgroup (a pod on a cgroup v1
    node, such as Amazon Linux 2's)."""
    hierarchy = cgroup_root / "cpu"
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return hierarchy
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            own = hierarchy / path.lstrip("/")
            return own if (own / "cpu.cfs_quota_us").exists() else hierarchy
    return hierarchy


def cfs_quota_cores(cpu_dir: Path) -> int | None:
    """Whole cores a cgroup v1 CPU quota (``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``; -1 for none) allows;
    None without one. Rounded down, at least one, as ``quota_cores``."""
    try:
        quota_text = (cpu_dir / "cpu.cfs_quota_us").read_text().strip()
        period_text = (cpu_dir / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    try:
        quota, period = int(quota_text), int(period_text)
    except ValueError as exc:
        raise ValueError(
            f"{cpu_dir}: expected whole microseconds in cpu.cfs_quota_us and cpu.cfs_period_us, got "
            f"{quota_text!r} and {period_text!r}"
        ) from exc
    return None if quota <= 0 or period <= 0 else max(1, quota // period)


def usable_cores(cpu_max: Path | None = None, cfs_dir: Path | None = None) -> int:
    """The cores this process may run on: its CPU affinity, cut to its cgroup's quota if it has one (cgroup v2's
    ``cpu.max``, else v1's CFS quota). Given either file's place, only the given ones are read."""
    cores = len(os.sched_getaffinity(0))
    if cpu_max is None and cfs_dir is None:
        cpu_max, cfs_dir = own_cpu_max(), own_cfs_dir()
    quota = (quota_cores(cpu_max) if cpu_max else None) or (cfs_quota_cores(cfs_dir) if cfs_dir else None)
    return min(cores, quota) if quota else cores


def threads_per_fit(training_rows: int, concurrent_steps: int = 1, cores: int | None = None) -> int:
    """OpenMP and BLAS threads (and a forest's workers) for each fit of a search on ``training_rows`` rows, with
    ``concurrent_steps`` searches running side by side on ``cores`` (default: ``usable_cores()``)."""
    cores = usable_cores() if cores is None else cores
    share = max(1, cores // max(1, min(cores, concurrent_steps)))
    return 1 if training_rows < ONE_THREAD_BELOW_ROWS else share
