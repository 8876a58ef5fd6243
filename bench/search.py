"""Candidate search: Dagster's parallel steps versus every candidate tuned one after another in one process, and
the platform's thread policy versus the threads the libraries choose.

For each data size, the bench materializes everything upstream of ``candidate_models`` once, then times,
from the same stored ``feature_pipeline`` and ``training_data``, each in a child process of its own:

- parallel: a Dagster run of ``candidate_models`` alone with MLPLATFORM_EXECUTOR=multiprocess (one step per
  candidate, forked from a server that preloaded ``mlplatform.definitions``);
- in_process: the same run with the default in-process executor (the candidates one after another);
- serial: ``candidates.tune_all`` in one plain process, the baseline, with the platform's thread policy
  (``mlplatform.lib.training.threads``: one thread per fit on small data, the cores otherwise);
- libraries: the same ``tune_all`` with the threads left to OpenMP, BLAS and the estimators' defaults
  (``candidates.LIBRARY_DEFAULTS``), what every search did in-process before the policy.

Every search is seeded and the thread count does not change a score, so every side must reach the same
cross-validated scores; the bench checks that. README.md (section "search.py") says what each number means
and what was measured.

    .venv/bin/python bench/search.py                          # 20,000 and 344 rows, 3 repeats (~15 min idle)
    .venv/bin/python bench/search.py --smoke                  # 1,000 rows, 1 trial, serial vs libraries (<1 min)
    .venv/bin/python bench/search.py --rows 344 --repeat 1    # the small size only (~1.5 min)
    .venv/bin/python bench/search.py --sides serial libraries # the thread policy alone
    .venv/bin/python bench/search.py --omp-threads 1          # every child limited to one OpenMP thread

No issue set a target on these ratios; the bench exits 1 when the sides reached different scores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import common

CANDIDATES = ("logistic_regression", "random_forest", "hist_gradient_boosting")
SIDES = {
    "parallel": "dagster, multiprocess executor",
    "in_process": "dagster, in-process executor",
    "serial": "tune_all in one process",
    "libraries": "tune_all, the libraries' threads",
}
SMOKE = {"rows": [1_000], "trials": 1, "repeat": 1, "sides": ["serial", "libraries"]}
DEFAULT_ROWS = (20_000, 344)
DEFAULT_TRIALS = 8


def write_spec(folder: Path, rows: int, trials: int) -> Path:
    """The bundled example's spec over ``rows`` synthetic penguins, with the three candidates on one budget
    and no time cap (a cap would make the searches depend on the machine's speed)."""
    from mlplatform.lib.spec import default_spec_path

    training = load_yaml(default_spec_path())["training"]
    training["candidates"] = {name: {"estimator": name, "trials": trials} for name in CANDIDATES}
    return common.write_spec(folder, common.synthetic_csv(folder, rows), training)


def load_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def child_environment(home: Path, spec: Path, omp_threads: int | None) -> dict[str, str]:
    """What ``mlplatform run --home HOME --spec SPEC`` sets up (`common.child_environment`: nothing of the
    bench's own settings, no deployment)."""
    from mlplatform.cli import instance_config

    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(instance_config(), dagster_home / "dagster.yaml")
    extra = {"MLPLATFORM_HOME": str(home), "MLPLATFORM_SPEC": str(spec), "DAGSTER_HOME": str(dagster_home)}
    if omp_threads:
        extra["OMP_NUM_THREADS"] = str(omp_threads)
    return common.child_environment(extra)


def _prepare_child(args: argparse.Namespace) -> dict:
    """Materialize everything upstream of candidate_models (in-process), so every side starts from it."""
    import dagster as dg

    from mlplatform import definitions

    candidate_models = dg.AssetSelection.assets("candidate_models")
    upstream = (candidate_models.upstream() - candidate_models).required_multi_asset_neighbors()
    upstream = upstream.resolve(definitions.defs().resolve_asset_graph())
    clock = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        _execute(instance, args.spec, sorted(upstream))
    return {"wall": time.perf_counter() - clock, "assets": sorted(key.to_user_string() for key in upstream)}


def _dagster_child(args: argparse.Namespace) -> dict:
    """One Dagster run of candidate_models alone, with the executor MLPLATFORM_EXECUTOR names."""
    started = time.perf_counter()
    import dagster as dg
    import joblib

    from mlplatform import definitions  # noqa: F401  (imports what building the Definitions needs)
    from mlplatform.settings import Settings

    imported = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        clock = time.perf_counter()
        result = _execute(instance, args.spec, [dg.AssetKey("candidate_models")])
        wall = time.perf_counter() - clock
        steps = {
            stats.step_key: {"seconds": stats.end_time - stats.start_time}
            for stats in instance.get_run_step_stats(result.run_id)
        }
        # The multiprocess executor's own cost per step: from asking for a worker to the step starting in it.
        asked: dict[str, float] = {}
        for record in instance.all_logs(
            result.run_id, of_type={dg.DagsterEventType.STEP_WORKER_STARTING, dg.DagsterEventType.STEP_START}
        ):
            if record.dagster_event.event_type == dg.DagsterEventType.STEP_WORKER_STARTING:
                asked[record.step_key] = record.timestamp
            elif record.step_key in asked:
                steps[record.step_key]["launch"] = record.timestamp - asked[record.step_key]
    settings = Settings.from_env()
    tuned = joblib.load(Path(settings.artifact_root) / "assets" / "candidate_models.joblib")
    return {
        "executor": settings.executor,
        "imports": imported - started,
        "wall": wall,
        "steps": steps,
        "candidates": _summarize(tuned.values()),
    }


def _execute(instance, spec: Path, assets: list):
    import dagster as dg

    from mlplatform import definitions
    from mlplatform.settings import Settings

    result = dg.execute_job(
        definitions.reconstructable_job(definitions.MATERIALIZE_ALL, Settings.from_env()),
        instance=instance,
        run_config=definitions.run_config(spec),
        tags={"mlplatform/launched_by": "bench/search.py"},
        asset_selection=assets,
    )
    if not result.success:
        raise SystemExit(f"run {result.run_id} of {[key.to_user_string() for key in assets]} failed")
    return result


def _serial_child(args: argparse.Namespace) -> dict:
    """``tune_all`` on the stored feature pipeline and training split, in this one process: the baseline with
    the platform's thread policy, or (the ``libraries`` side) with the threads the libraries choose."""
    started = time.perf_counter()
    import joblib
    import pandas as pd

    from mlplatform.lib.spec import load_spec
    from mlplatform.lib.training import candidates
    from mlplatform.settings import Settings

    imported = time.perf_counter()
    stored = Path(Settings.from_env().artifact_root) / "assets"
    feature_pipeline = joblib.load(stored / "feature_pipeline.joblib")
    training = pd.read_parquet(stored / "training_data.parquet")
    spec = load_spec(args.spec)
    loaded = time.perf_counter()
    threads = candidates.LIBRARY_DEFAULTS if args.child == "libraries" else None
    tuned = candidates.tune_all(feature_pipeline, training, spec, threads)
    return {
        "imports": imported - started,
        "load": loaded - imported,
        "wall": time.perf_counter() - loaded,
        "candidates": _summarize(tuned.values()),
    }


def _summarize(tuned) -> dict:
    return {
        c.name: {"cv_score": c.cv_score, "trials": c.trials, "seconds": c.seconds, "threads": c.threads} for c in tuned
    }


def run_child(role: str, spec: Path, env: dict[str, str], log: Path) -> dict:
    timings = log.with_suffix(".json")
    command = [sys.executable, __file__, "--child", role, "--spec", str(spec), "--timings", str(timings)]
    if role in SIDES:
        env = {**env, "MLPLATFORM_EXECUTOR": "multiprocess" if role == "parallel" else "in_process"}
    common.run_child(command, env, log)
    return json.loads(timings.read_text()) | {"load_average": os.getloadavg()[0]}


def measure_size(rows: int, trials: int, repeat: int, workdir: Path, omp_threads: int | None, sides: list[str]) -> dict:
    folder = workdir / str(rows)
    spec = write_spec(folder, rows, trials)
    env = child_environment(folder / "home", spec, omp_threads)
    load_before = os.getloadavg()
    prepared = run_child("prepare", spec, env, folder / "prepare.log")
    print(f"{rows:>7,} rows: upstream assets materialized in {prepared['wall']:.1f} s (not timed)", flush=True)
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    order = list(sides)
    for index in range(repeat):
        turn = index % len(order)
        for side in order[turn:] + order[:turn]:  # rotate the order against drift in the load
            measured = run_child(side, spec, env, folder / f"{side}-{index}.log")
            runs[side].append(measured)
            print(
                f"{rows:>7,} rows  run {index + 1}/{repeat}  {side:<10} {measured['wall']:7.2f} s"
                f"  (load average {measured['load_average']:.2f})",
                flush=True,
            )
    return {
        "rows": rows,
        "trials": trials,
        "repeat": repeat,
        "omp_threads": omp_threads,
        "runs": runs,
        "load_average": [load_before, os.getloadavg()],
    }


def differences(runs: dict[str, list[dict]]) -> list[str]:
    """Every candidate's cv score and trial count must be the same in every run of every side."""
    found = []
    for name in CANDIDATES:
        seen = {
            (run["candidates"][name]["cv_score"], run["candidates"][name]["trials"])
            for side_runs in runs.values()
            for run in side_runs
        }
        if len(seen) > 1:
            found.append(f"{name}: (cv score, trials) differ between runs: {sorted(seen)}")
    return found


def report(size: dict, metric: str) -> tuple[str, list[str], dict[str, float]]:
    from mlplatform.lib.training.metrics import natural

    runs = size["runs"]

    def best_median(values: list[float]) -> tuple[float, float]:
        return min(values), statistics.median(values)

    def best_reached(run: dict) -> str:
        scores = run["candidates"]
        winner = max(scores, key=lambda name: scores[name]["cv_score"])
        return f"{natural(metric, scores[winner]['cv_score']):.4f} ({winner})"

    walls = {side: best_median([run["wall"] for run in runs[side]]) for side in runs}
    threads = f", OMP_NUM_THREADS={size['omp_threads']}" if size["omp_threads"] else ""
    before, after = size["load_average"]
    lines = [
        f"\n== {size['rows']:,} rows: 3 candidates x {size['trials']} trials, {size['repeat']} repeat(s){threads}; "
        f"1-min load average {before[0]:.2f} before, {after[0]:.2f} after ==",
        f"  {'side':<42}{'wall s best / median':>22}{'÷ serial best / median':>26}{'imports s':>11}"
        f"   best cv {metric} reached",
    ]
    for side in runs:
        label = SIDES[side]
        low, middle = walls[side]
        ratio = f"{low / walls['serial'][0]:.2f}x / {middle / walls['serial'][1]:.2f}x"
        imports = statistics.median(run["imports"] for run in runs[side])
        reached = {best_reached(run) for run in runs[side]}
        lines.append(
            f"  {side + ' (' + label + ')':<42}{low:>10.2f} / {middle:<9.2f}{ratio:>24}{imports:>11.2f}"
            f"   {' / '.join(sorted(reached))}"
        )
    mismatches = differences(runs)
    load = statistics.median(run["load"] for run in runs["serial"])
    lines.append(f"  serial: reading the stored feature_pipeline and training_data took {load:.2f} s, outside its wall")
    if "libraries" in runs:
        (policy_best, policy_median), (free_best, free_median) = walls["serial"], walls["libraries"]
        chosen = {name: found["threads"] for name, found in runs["serial"][0]["candidates"].items()}
        lines.append(
            f"  THREAD POLICY: the libraries' threads ÷ the platform's policy = {free_best / policy_best:.2f}x best, "
            f"{free_median / policy_median:.2f}x median (policy: threads per fit {chosen})"
        )
    ratios = {side: walls[side][0] / walls["serial"][0] for side in runs if side != "serial"}
    if mismatches:
        lines.append("  !!! the sides reached DIFFERENT scores: see the end of the output !!!")
    else:
        lines.append("  every candidate's cv score is identical on every side and in every run (seeded searches)")

    dagster_sides = [side for side in ("in_process", "parallel") if side in runs]
    lines += [
        "",
        "  median seconds per step; search = the candidate's TunedCandidate.seconds (trials + refit), step = the",
        "  Dagster step's start to success, launch = from the executor asking for a worker to the step's start",
        f"  {'step':<38}{'serial search':>14}{'libraries search':>18}"
        + ("" if "in_process" not in runs else f"{'in_process search, step':>26}")
        + ("" if "parallel" not in runs else f"{'parallel search, step, launch':>32}"),
    ]
    steps = (*(f"tune_candidate[{name}]" for name in CANDIDATES),)
    if dagster_sides:
        steps = ("plan_candidates", *steps, "collect_candidates")
    for step in steps:
        tuned = re.fullmatch(r"tune_candidate\[(.+)\]", step)

        def search(side: str, tuned=tuned) -> float | None:
            if side not in runs or not tuned:
                return None
            return _median(run["candidates"][tuned.group(1)]["seconds"] for run in runs[side])

        def stat(side: str, key: str, step=step) -> float | None:
            return _median(run["steps"].get(f"candidate_models.{step}", {}).get(key) for run in runs[side])

        cells = [_cells(14, search("serial")), _cells(18, search("libraries"))]
        if "in_process" in runs:
            cells.append(_cells(18, search("in_process")) + _cells(8, stat("in_process", "seconds")))
        if "parallel" in runs:
            cells.append(
                _cells(16, search("parallel")) + _cells(8, stat("parallel", "seconds"), stat("parallel", "launch"))
            )
        lines.append(f"  {step:<38}" + "".join(cells))
    return "\n".join(lines), mismatches, ratios


def _median(values) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def _cells(width: int, *values: float | None) -> str:
    return "".join(f"{'-' if value is None else f'{value:.2f}':>{width}}" for value in values)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", help=f"synthetic data sizes (default: {DEFAULT_ROWS})")
    parser.add_argument("--trials", type=int, help=f"Optuna trials per candidate (default: {DEFAULT_TRIALS})")
    parser.add_argument("--repeat", "--repeats", type=int, help="timed runs per side and size (default: 3)")
    parser.add_argument("--sides", nargs="+", choices=list(SIDES), help="what to time (default: all; serial always)")
    common.add_standard_arguments(parser, f"a size that finishes in well under a minute: {SMOKE}")
    parser.add_argument("--omp-threads", type=int, help="set OMP_NUM_THREADS in every child (default: unset)")
    parser.add_argument("--workdir", type=Path, help="keep data, homes and logs here (default: a temp dir, removed)")
    parser.add_argument("--child", choices=("prepare", *SIDES), help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--timings", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = SMOKE if args.smoke else {"rows": list(DEFAULT_ROWS), "trials": DEFAULT_TRIALS, "repeat": 3}
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.sides = ["serial", *(side for side in (args.sides or SIDES) if side != "serial")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        child = {"prepare": _prepare_child, "serial": _serial_child, "libraries": _serial_child}.get(
            args.child, _dagster_child
        )
        args.timings.write_text(json.dumps(child(args)))
        return 0

    from mlplatform.lib.spec import load_spec

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mlplatform-bench-search-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"{common.machine()}; working in {workdir}", flush=True)
    sizes = []
    try:
        for rows in args.rows:
            sizes.append(measure_size(rows, args.trials, args.repeat, workdir, args.omp_threads, args.sides))
        metric = load_spec(workdir / str(args.rows[0]) / "spec.yaml").problem.primary_metric
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\nWall seconds of the search alone (imports excluded); ratio = side ÷ serial (lower is better).")
    mismatches = []
    for size in sizes:
        text, found, ratios = report(size, metric)
        print(text)
        for side, value in ratios.items():
            common.ratio_line(f"{side}/serial at {size['rows']} rows", value, f"best wall; {SIDES[side]}")
        mismatches += [f"{size['rows']:,} rows: {line}" for line in found]
    print(f"\nall measurements: {common.save_results(args.results, 'search', sizes)}")
    return common.verdict([], smoke=args.smoke, different_work=mismatches)


if __name__ == "__main__":
    raise SystemExit(main())
