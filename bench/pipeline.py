"""Whole-graph materialization through Dagster versus a plain script over the same ``mlplatform.lib`` calls.

Each measurement is a child process, so both sides pay interpreter start and imports the same way:

- dagster: ``mlplatform.cli.main(["run", ...])``, the code behind ``mlplatform run``, in a fresh
  MLPLATFORM_HOME (new SQLite instance, new artifact folder) per run;
- plain: ``plain_pipeline`` below, the script a user would write without Dagster.

Both read the same data file through the same spec. README.md (section "pipeline.py") says exactly what
each side does and how to read the tables.

    .venv/bin/python bench/pipeline.py                       # the bundled 344 rows and 1,000,000 synthetic rows
    .venv/bin/python bench/pipeline.py --quick               # 344 and 100,000 rows, one run each
    .venv/bin/python bench/pipeline.py --rows 200000 --repeats 2 --profile
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_ROOT / "bench" / "results"


def plain_pipeline(spec_path: Path, out: Path) -> dict[str, float]:
    """Everything a user needs without Dagster, timed per stage; stage names are the Dagster steps."""
    import joblib

    from mlplatform.lib import cleaning, evaluation, features, ingest, training
    from mlplatform.lib.spec import load_spec

    seconds: dict[str, float] = {}

    @contextmanager
    def stage(name: str):
        started = time.perf_counter()
        yield
        seconds[name] = time.perf_counter() - started

    out.mkdir(parents=True, exist_ok=True)
    with stage("raw_data"):
        spec = load_spec(spec_path)
        raw = ingest.read_source(spec)
        ingest.check_columns(spec, raw)
        version = ingest.data_version(raw)
    with stage("cleaned_data"):
        cleaned, cleaning_report = cleaning.clean(raw, spec)
    with stage("data_split"):
        train_rows, holdout, split = features.split(cleaned, spec)
    with stage("feature_pipeline"):
        pipeline = features.fit_feature_pipeline(train_rows, spec)
    with stage("trained_model"):
        model = training.train(pipeline, train_rows, spec)
        joblib.dump(model, out / "model.joblib")
    with stage("evaluation_report"):
        result = evaluation.evaluate(model, holdout, spec)
        for name, png in result.plots.items():
            (out / f"{name}.png").write_bytes(png)
        links = {name: f"![{name}]({name}.png)" for name in result.plots}
        (out / "report.md").write_text(evaluation.render_report(result, spec, model, links))
        summary = {"data_version": version, "rows_cleaned": cleaning_report["rows_out"], "metrics": result.metrics}
        (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    print(f"{spec.name}: {split.training_rows} training rows, {result.primary_metric} {result.primary_value:.4f}")
    return seconds


def _plain_child(args: argparse.Namespace) -> dict:
    from mlplatform.lib import cleaning, evaluation, features, ingest, training  # noqa: F401  (stamped below)

    imported = time.time()
    stages = plain_pipeline(args.spec, args.out)
    return {"imported": imported, "finished": time.time(), "stages": stages}


def _dagster_child(args: argparse.Namespace) -> dict:
    import dagster as dg

    # What `mlplatform run` imports, hoisted so the end of imports can be stamped. The parent set
    # MLPLATFORM_HOME and MLPLATFORM_SPEC to the values `--home` and `--spec` set, so the Definitions
    # built at import are the ones `mlplatform run` builds.
    from mlplatform import cli, definitions, summary  # noqa: F401
    from mlplatform.resources.artifacts import ArtifactIOManager

    imported = time.time()
    probes: list[tuple[str, float, float]] = []
    _time_calls(ArtifactIOManager, "handle_output", "io_write", probes)
    _time_calls(ArtifactIOManager, "load_input", "io_read", probes)
    _time_calls(dg.DagsterInstance, "handle_new_event", "event_log", probes)
    code = cli.main(["run", "--spec", str(args.spec), "--home", str(args.out)])
    if code:
        raise SystemExit(code)
    return {"imported": imported, "finished": time.time(), "probes": probes}


def _time_calls(owner: type, name: str, kind: str, probes: list) -> None:
    """Wrap a method to record (kind, start, end) per call: a few microseconds each."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args, **kwargs):
        started = time.time()
        try:
            return original(*args, **kwargs)
        finally:
            probes.append((kind, started, time.time()))

    setattr(owner, name, timed)


def child_environment(workdir: Path) -> dict[str, str]:
    """The children's environment: no MLPLATFORM_/DAGSTER_ settings leaking in, and bytecode caching on
    (into the work folder when no prefix is set) so imports cost what they cost in a normal install."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLPLATFORM_", "DAGSTER_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("PYTHONPYCACHEPREFIX", str(workdir / "pycache"))
    return env


def run_side(side: str, spec: Path, out: Path, env: dict[str, str], log: Path, profile: Path | None = None) -> dict:
    timings = out.with_suffix(".timings.json")
    command = [sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
    command += [__file__, "--child", side, "--spec", str(spec), "--out", str(out), "--timings", str(timings)]
    if side == "dagster":
        env = {**env, "MLPLATFORM_HOME": str(out), "MLPLATFORM_SPEC": str(spec)}
    started, clock = time.time(), time.perf_counter()
    with log.open("w") as sink:
        child = subprocess.Popen(command, env=env, cwd=log.parent, stdout=sink, stderr=subprocess.STDOUT)
        # wait4 gives the CPU time of the child and of every process it started and reaped (tail, watchers).
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    wall, exited = time.perf_counter() - clock, time.time()
    if child.returncode:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"{side} run failed with exit code {child.returncode}; the end of {log}:\n{tail}")
    measured = {
        "side": side,
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "started": started,
        "exited": exited,
        **json.loads(timings.read_text()),
    }
    if side == "dagster":
        measured.update(read_runs(out / "dagster"))
    else:
        measured["metrics"] = json.loads((out / "metrics.json").read_text())["metrics"]
    return measured


def read_runs(dagster_home: Path) -> dict:
    """Every run's event timestamps and the holdout metrics recorded last, from the instance the child wrote."""
    import dagster as dg

    events, metrics = [], {}
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for run in reversed(instance.get_runs()):
            for record in instance.all_logs(run.run_id):
                event = record.dagster_event
                kind = event.event_type_value if event else "LOG"
                events.append((kind, record.step_key, record.timestamp, run.run_id))
                if kind == "ASSET_MATERIALIZATION" and event.asset_key.to_user_string() == "evaluation_report":
                    metadata = event.step_materialization_data.materialization.metadata.items()
                    metrics = {k.removeprefix("holdout_"): v.value for k, v in metadata if k.startswith("holdout_")}
    metrics.pop("rows", None)
    return {"events": sorted(events, key=lambda event: event[2]), "metrics": metrics}


def breakdown(dagster: dict, plain: dict) -> tuple[list[tuple], list[tuple[str, float]]]:
    """Per-step rows (step, plain, dagster, io read, io write, event log, rest) and the decomposition of
    dagster wall - plain wall into named parts that sum to it exactly. Steps come from the event log, so
    the table follows the graph; a plain stage without a Dagster step of its name gets a row of its own."""
    events, probes = dagster["events"], dagster["probes"]
    first_event = events[0][2]
    run_end = max(end for _, _, end in probes)
    spans: dict[tuple[str, str], list[float]] = {}
    for kind, step, stamp, run_id in events:
        if kind == "STEP_START":
            spans[(run_id, step)] = [stamp, stamp]
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            spans[(run_id, step)][1] = stamp

    def spent(kind: str, start: float, end: float) -> float:
        return sum(e - s for k, s, e in probes if k == kind and start <= s < end)

    rows, step_total, step_rest = [], 0.0, 0.0
    for (_, step), (start, end) in spans.items():
        parts = [spent(kind, start, end) for kind in ("io_read", "io_write", "event_log")]
        rest = end - start - sum(parts)
        rows.append((step, plain["stages"].get(step), end - start, *parts, rest))
        step_total += end - start
        step_rest += rest
    shown = {row[0] for row in rows}
    unmatched = [(stage, seconds) for stage, seconds in plain["stages"].items() if stage not in shown]
    rows += [(stage, seconds, None, None, None, None, None) for stage, seconds in unmatched]
    events_in_steps = sum(row[5] or 0.0 for row in rows)
    events_outside_steps = spent("event_log", first_event, run_end) - events_in_steps
    plain_stages = sum(plain["stages"].values())
    plain_other = plain["finished"] - plain["imported"] - plain_stages
    parts = [
        ("process start + imports", _imports(dagster) - _imports(plain)),
        ("instance + run setup before the first event", first_event - dagster["imported"]),
        ("IO manager writes (Parquet/joblib)", sum(row[4] or 0.0 for row in rows)),
        ("IO manager reads", sum(row[3] or 0.0 for row in rows)),
        ("event log writes (SQLite), all events", events_in_steps + events_outside_steps),
        ("asset bodies + step framework - plain stages", step_rest - plain_stages - plain_other),
        ("orchestration between steps", (run_end - first_event) - step_total - events_outside_steps),
        ("after the run (summary, instance close)", dagster["finished"] - run_end),
        ("interpreter exit", (dagster["exited"] - dagster["finished"]) - (plain["exited"] - plain["finished"])),
    ]
    return rows, parts


def _imports(measured: dict) -> float:
    return measured["imported"] - measured["started"]


def prepare(rows: int, bundled: Path, bundled_rows: int, folder: Path) -> Path:
    """The spec both sides read: the bundled example's, pointing at the bundled CSV or a synthetic file."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    if rows == bundled_rows:
        data = bundled.parent / "penguins.csv"
    else:
        from mlplatform.lib import synthetic

        data = folder / f"penguins-{rows}.csv"
        print(f"writing {rows:,} synthetic rows to {data} (not timed)", flush=True)
        synthetic.penguins(rows, seed=0).to_csv(data, index=False)
    document = yaml.safe_load(bundled.read_text())
    document["source"]["uri"] = str(data)
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump(document, sort_keys=False))
    return spec


def measure_size(rows: int, spec: Path, folder: Path, repeats: int, env: dict[str, str], profile: bool) -> dict:
    runs: dict[str, list[dict]] = {"plain": [], "dagster": []}
    for index in range(repeats):
        order = ("plain", "dagster") if index % 2 == 0 else ("dagster", "plain")  # alternate against drift
        for side in order:
            out = folder / f"{side}-{index}"
            measured = run_side(side, spec, out, env, folder / f"{side}-{index}.log")
            runs[side].append(measured)
            print(f"  {rows:>9,} rows  run {index + 1}/{repeats}  {side:<7} {measured['wall']:7.2f} s", flush=True)
            shutil.rmtree(out, ignore_errors=True)  # keep the disk small at 1M rows; the logs stay
    if profile:
        target = RESULTS / f"profile-dagster-{rows}.pstats"
        RESULTS.mkdir(parents=True, exist_ok=True)
        run_side("dagster", spec, folder / "profiled", env, folder / "profiled.log", profile=target)
        print(f"  cProfile of one dagster run: {target}")
    return {"rows": rows, "repeats": repeats, "runs": runs}


def report(size: dict) -> str:
    rows, runs = size["rows"], size["runs"]
    best = {side: min(runs[side], key=lambda run: run["wall"]) for side in runs}

    def after_imports(run: dict) -> float:
        return run["finished"] - run["imported"]

    def summary(side: str, measure) -> tuple[float, float]:
        values = [measure(run) for run in runs[side]]
        return min(values), statistics.median(values)

    lines = [
        f"\n== {rows:,} rows, {size['repeats']} run(s) per side: best / median seconds ==",
        "  side       wall (start to exit)     CPU (user+sys)      after imports",
    ]
    for side in ("plain", "dagster"):
        cells = [summary(side, measure) for measure in (lambda r: r["wall"], lambda r: r["cpu"], after_imports)]
        lines.append(f"  {side:<8}" + "".join(f"  {low:8.2f} / {mid:8.2f}" for low, mid in cells))
    differing = {
        name: (value, best["dagster"]["metrics"].get(name))
        for name, value in best["plain"]["metrics"].items()
        if not abs(value - best["dagster"]["metrics"].get(name, float("nan"))) <= 1e-9
    }
    if differing:
        lines.append(f"  WARNING: holdout metrics differ between the sides (plain, dagster): {differing}")

    step_rows, parts = breakdown(best["dagster"], best["plain"])
    width = max(len(row[0]) for row in step_rows)
    header = ("plain s", "dagster s", "io read", "io write", "event log", "body+framework")
    lines += ["", f"  {'step (best runs)':<{width}}" + "".join(f"{name:>{len(name) + 3}}" for name in header)]
    for step, *numbers in step_rows:
        cells = ("-" if n is None else f"{n:.2f}" for n in numbers)
        aligned = (f"{cell:>{len(name) + 3}}" for cell, name in zip(cells, header, strict=True))
        lines.append(f"  {step:<{width}}" + "".join(aligned))
    overhead = best["dagster"]["wall"] - best["plain"]["wall"]
    lines += ["", f"  where dagster's extra {overhead:+.2f} s goes (best dagster run - best plain run):"]
    lines += [f"    {name:<46} {seconds:+7.2f} s" for name, seconds in parts]

    def ratio(measure) -> float:
        return summary("dagster", measure)[0] / summary("plain", measure)[0]

    median_ratio = summary("dagster", lambda r: r["wall"])[1] / summary("plain", lambda r: r["wall"])[1]
    lines += [
        "",
        f"ratio dagster/plain at {rows} rows: {ratio(lambda r: r['wall']):.2f}x",
        f"  (best wall; median wall {median_ratio:.2f}x, best CPU {ratio(lambda r: r['cpu']):.2f}x, "
        f"best after imports {ratio(after_imports):.2f}x)",
    ]
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", help="data sizes; 344 (bundled) is the bundled CSV")
    parser.add_argument("--repeats", type=int, help="runs per side and size (default: 5 up to 100,000 rows, else 3)")
    parser.add_argument("--quick", action="store_true", help="344 and 100,000 rows, one run per side")
    parser.add_argument("--profile", action="store_true", help="also write a cProfile of one dagster run per size")
    parser.add_argument("--workdir", type=Path, help="keep data and logs here (default: a temp dir, removed)")
    parser.add_argument("--child", choices=("plain", "dagster"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--timings", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        child = _plain_child if args.child == "plain" else _dagster_child
        timings = child(args)
        args.timings.write_text(json.dumps(timings))
        return 0

    from mlplatform.lib.spec import default_spec_path

    bundled = default_spec_path()
    bundled_rows = sum(1 for _ in (bundled.parent / "penguins.csv").open()) - 1
    sizes = args.rows or ([bundled_rows, 100_000] if args.quick else [bundled_rows, 1_000_000])
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mlplatform-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = child_environment(workdir)
    sizes_measured = []
    try:
        print(f"warming up (bytecode and file caches; not timed) in {workdir}", flush=True)
        warm = prepare(bundled_rows, bundled, bundled_rows, workdir / "warm-up")
        for side in ("plain", "dagster"):
            run_side(side, warm, workdir / "warm-up" / side, env, workdir / "warm-up" / f"{side}.log")
        for rows in sizes:
            folder = workdir / str(rows)
            spec = prepare(rows, bundled, bundled_rows, folder)
            repeats = args.repeats or (1 if args.quick else 5 if rows <= 100_000 else 3)
            sizes_measured.append(measure_size(rows, spec, folder, repeats, env, args.profile))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\nWall seconds per child process (interpreter start to exit); ratio = best dagster / best plain.")
    for size in sizes_measured:
        print(report(size))
    RESULTS.mkdir(parents=True, exist_ok=True)
    saved = RESULTS / f"pipeline-{time.strftime('%Y%m%d-%H%M%S')}.json"
    saved.write_text(json.dumps(sizes_measured))
    print(f"\nall measurements: {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
