"""What every benchmark shares: the results folder, child processes in a clean environment, best/median timing,
the ratio line, the targets a bench states, and the exit status that follows from them.

A bench measures its baseline in the same run, prints ``ratio <what>: <x>x`` for each comparison (the smoke
test looks for that line), then checks its targets. Exit status: ``EXIT_OK``; ``EXIT_DIFFERENT_WORK`` when the
two sides did not compute the same thing (always, a ratio between different work means nothing);
``EXIT_TARGET_MISSED`` when a stated target is not met, outside ``--smoke`` (a smoke size is too small for a
target to mean anything, so it is reported and not enforced).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_ROOT / "bench" / "results"
EXIT_OK = 0
EXIT_DIFFERENT_WORK = 1
EXIT_TARGET_MISSED = 3
# A training budget fixed in trials, not seconds, so both sides of a comparison train exactly the same models
# (a time cap would let them run different numbers of trials), and small enough that the graph's other work
# is not hidden: the bundled budget's random forest takes longer than the rest of the graph at 1,000,000 rows.
FIXED_TRAINING = {
    "cv_folds": 3,
    "seed": 42,
    "candidates": {
        "logistic_regression": {"estimator": "logistic_regression", "trials": 2},
        "hist_gradient_boosting": {"estimator": "hist_gradient_boosting", "trials": 1, "params": {"max_iter": 20}},
    },
}


def add_standard_arguments(parser: argparse.ArgumentParser, smoke_size: str) -> None:
    parser.add_argument("--smoke", action="store_true", help=f"{smoke_size}; targets reported, not enforced")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"where the JSON goes (default: {RESULTS})")


@contextmanager
def workdir(given: Path | None, prefix: str) -> Iterator[Path]:
    """The folder a bench works in: ``--workdir`` when given (kept, with its logs), else a temporary one
    removed on the way out, whatever happened."""
    folder = given or Path(tempfile.mkdtemp(prefix=prefix))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    finally:
        if given is None:
            shutil.rmtree(folder, ignore_errors=True)


def save_results(folder: Path, name: str, document: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    saved = folder / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    saved.write_text(json.dumps(document, indent=1, default=str))
    return saved


def machine() -> str:
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{len(os.sched_getaffinity(0))} usable cores, load average {load}"


def seconds(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def best_median(values: Iterable[float]) -> tuple[float, float]:
    """The least disturbed measurement and the typical one: on a shared machine read them together."""
    measured = list(values)
    return min(measured), statistics.median(measured)


def ratio_line(what: str, value: float, detail: str = "") -> str:
    """The one line per comparison every bench prints, in one format: ``ratio <what>: 1.23x (detail)``."""
    line = f"ratio {what}: {value:.2f}x" + (f"  ({detail})" if detail else "")
    print(line, flush=True)
    return line


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a bench's child (a pipeline run, a search, the CLI): none of the caller's own
    MLPLATFORM_/DAGSTER_/BENTOML_ settings, the graph up to the champion only (MLPLATFORM_DEPLOY=none: a bench
    never leaves a `bentoml serve` behind), and bytecode written as an installed project would: a sandbox's
    PYTHONDONTWRITEBYTECODE would make every child compile the project's modules again."""
    prefixes = ("MLPLATFORM_", "DAGSTER_", "BENTOML_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env |= {"MLPLATFORM_DEPLOY": "none", "BENTOML_DO_NOT_TRACK": "true", "GX_ANALYTICS_ENABLED": "false"}
    return env | dict(extra or {})


@dataclass(frozen=True)
class ChildRun:
    wall: float
    cpu: float  # user + system of the child and every process it started and reaped
    output: str


def run_child(command: list[str], env: Mapping[str, str], log: Path, cwd: Path | None = None) -> ChildRun:
    """Run ``command`` with its output in ``log``; raise with the end of the log if it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()
    with log.open("w") as sink:
        child = subprocess.Popen(command, env=dict(env), cwd=cwd or log.parent, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)  # wait4: the CPU time of the child's whole tree
        child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - clock
    output = log.read_text(errors="replace")
    if child.returncode:
        tail = "".join(output.splitlines(keepends=True)[-30:])
        raise RuntimeError(f"{' '.join(command[:4])} ... failed with exit code {child.returncode}; {log} ends:\n{tail}")
    return ChildRun(wall, usage.ru_utime + usage.ru_stime, output)


def run_cli(arguments: list[str], *, home: Path, log: Path, extra: Mapping[str, str] | None = None) -> ChildRun:
    """``mlplatform ARGUMENTS --home HOME`` as a user runs it, in a child with `child_environment`."""
    command = [sys.executable, "-m", "mlplatform.cli", *arguments, "--home", str(home)]
    return run_child(command, child_environment(extra), log)


def write_spec(folder: Path, data: Path, training: Mapping | None = None) -> Path:
    """The bundled example's spec reading ``data``, its training section replaced by ``training`` if given."""
    import yaml

    from mlplatform.lib.spec import default_spec_path

    document = yaml.safe_load(default_spec_path().read_text())
    document["source"]["uri"] = str(data)
    if training is not None:
        document["training"] = dict(training)
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump(document, sort_keys=False))
    return spec


def synthetic_csv(folder: Path, rows: int) -> Path:
    """``rows`` synthetic penguins (seed 0) as a CSV in ``folder``: written before any timing."""
    from mlplatform.lib.data import synthetic

    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"penguins-{rows}.csv"
    synthetic.penguins(rows, seed=0).to_csv(data, index=False)
    return data


def start_server(command: list[str], *, port: int, log: Path, env: Mapping[str, str], stack: ExitStack):
    """A server process answering on 127.0.0.1:``port`` (``wait_ready`` polls its /readyz), stopped with its
    children when ``stack`` closes, whatever fails in between."""
    from mlplatform.resources.bentos import LocalServer

    with log.open("ab") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=dict(env))
    server = LocalServer(process, f"http://127.0.0.1:{port}", log)
    stack.callback(server.stop)
    return server


def model_folder(tag: str) -> Path:
    """A model version's folder, through BentoML's public API: the store is the one BENTOML_HOME names, read
    by BentoML once, at its first use in the process."""
    import bentoml

    return Path(bentoml.models.get(tag).path)


@dataclass(frozen=True)
class Target:
    """What an issue asked of a measurement, e.g. ``Target("dagster ÷ plain wall", 1.06, "<=", 1.10)``.
    ``measured`` None: this run did not measure it (a section left out). ``applies`` False: measured, but not
    under the conditions the target was set for (a smaller size), so it is shown and never enforced."""

    what: str
    measured: float | None
    comparison: str  # "<=" or ">="
    limit: float
    applies: bool = True
    condition: str = ""  # where the target applies, e.g. "at 1,000,000 rows"

    @property
    def met(self) -> bool | None:
        if self.measured is None or not self.applies:
            return None
        return self.measured <= self.limit if self.comparison == "<=" else self.measured >= self.limit

    def line(self) -> str:
        wanted = f"{self.what} {self.comparison} {self.limit:g}" + (f" {self.condition}" if self.condition else "")
        if self.measured is None:
            return f"  {wanted}: not measured in this run"
        if not self.applies:
            return f"  {wanted}: {self.measured:.3g} here, not under that condition (not enforced)"
        return f"  {wanted}: {self.measured:.3g} {'met' if self.met else 'NOT MET'}"


def verdict(targets: list[Target], *, smoke: bool, different_work: list[str] = ()) -> int:
    """Print the targets and anything the sides disagreed on; return the bench's exit status."""
    if targets:
        print("\ntargets" + (" (smoke size: reported, not enforced)" if smoke else "") + ":")
        for target in targets:
            print(target.line())
    if different_work:
        print("\n!!! THE SIDES DID NOT DO THE SAME WORK; the ratios above compare different things:")
        print("\n".join(f"  {line}" for line in different_work))
        return EXIT_DIFFERENT_WORK
    missed = [target.what for target in targets if target.met is False]
    if missed and not smoke:
        print(f"\nNOT MET: {'; '.join(missed)}")
        return EXIT_TARGET_MISSED
    return EXIT_OK
