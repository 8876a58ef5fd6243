"""Whole-graph materialization through Dagster versus a plain script doing the same work with the same ``lib`` calls.

Each measurement is a child process with a fresh home folder, so both sides pay interpreter start, imports
and a first run the same way:

- dagster: the whole graph in one Dagster run, as "Materialize all" in the UI: copy the project's dagster.yaml
  into the home, open the SQLite instance there, ``dagster.execute_job`` of ``materialize_all`` (in-process
  executor, progress logger), print the summary (``mlplatform run`` does the same work in two runs, the batch's
  validation and then the training);
- plain: ``plain_pipeline`` below, the graph's ``lib`` calls in the order the in-process executor runs
  them, with the same ledger, quality suites, candidate searches, report files, model store and promotion.

Both read the same data file through the same benchmark spec and must reach the same holdout metrics.
README.md (section "pipeline.py") says exactly what each side does and how to read the tables.

    .venv/bin/python bench/pipeline.py                       # the bundled 344 rows and 1,000,000 synthetic rows
    .venv/bin/python bench/pipeline.py --quick               # 344 and 100,000 rows, one run each
    .venv/bin/python bench/pipeline.py --rows 200000 --repeats 2 --profile
    .venv/bin/python bench/pipeline.py --smoke               # the bundled 344 rows, one run each, no warm-up

Exit status 1 when the sides reached different metrics, 3 when dagster ÷ plain at 1,000,000 rows is above
issue #2's target of 1.10x (best wall).
"""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from upath import UPath

from bench import common
from bench.common import FIXED_TRAINING, Target
from mlplatform.lib.data import batches, cleaning, ingest
from mlplatform.lib.evaluation import evaluation
from mlplatform.lib.features import features
from mlplatform.lib.monitoring.reference import reference_sample
from mlplatform.lib.quality import builders, feature_quality, gx_suites, outcomes, profiling
from mlplatform.lib.registry import promotion, registry
from mlplatform.lib.registry.registry import Registry
from mlplatform.lib.spec import load_spec
from mlplatform.lib.storage import write_atomically
from mlplatform.lib.training import candidates, training

# Everything the plain side calls, imported by both children before their imports are stamped done (the Dagster
# side's Definitions import the same modules).
from mlplatform.resources.model_store import BentoMLStore

TARGET_ROWS, TARGET_RATIO = 1_000_000, 1.10  # issue #2: Dagster ÷ plain, best wall, at 1,000,000 rows


def plain_pipeline(spec_path: Path, home: Path) -> dict:
    """The graph's ``lib`` calls in the order the in-process executor runs its steps, under ``home`` as a run
    writes them (ledger, quality docs folders, report, model store, champion pointer), values kept in memory
    between steps. Stage names are the Dagster step keys; each stage reads the spec, as each asset does."""
    seconds: dict[str, float] = {}

    @contextmanager
    def stage(name: str):
        started = time.perf_counter()
        yield
        seconds[name] = time.perf_counter() - started

    run_id, artifacts = str(uuid.uuid4()), home / "artifacts"
    ledger = batches.BatchLedger(UPath(artifacts) / "batches")

    def docs_folder(suite: str) -> Path:  # what the checks' local_folder() makes for a local artifact root
        folder = artifacts / "quality" / "docs" / suite / run_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def blocking(report: outcomes.QualityReport, what: str) -> None:
        if report.errors:
            raise SystemExit(f"{what} rejected:\n" + "\n".join(report.lines()))

    def registry_for(spec) -> Registry:  # the ModelRegistry resource's for_project()
        return Registry(BentoMLStore(home / "bentoml"), str(artifacts), spec.name)

    with stage("raw_batch"):
        spec = load_spec(spec_path)
        batch = batches.arriving_batch(spec, ledger)
        if ledger.current_profile() is None:
            ingest.check_columns(spec, batch.frame)
        raw = batch.frame
        ingest.data_version(raw)
    with stage("raw_batch_raw_batch_is_valid"):
        spec = load_spec(spec_path)
        rules = builders.batch_rules(spec, [str(c) for c in raw.columns], ledger.current_profile(), len(raw))
        report = gx_suites.validate(raw, rules, "raw_batch", docs_dir=docs_folder("raw_batch"))
        if report.errors:
            ledger.quarantine(batch, {"stage": "validation", "reasons": report.lines(), "run_id": run_id})
        blocking(report, f"batch {batch.batch_id}")
    with stage("accepted_data"):
        ledger.accept(batch, run_id)
        accepted = ledger.accepted_frame()
        ledger.manifest()
        version = ingest.data_version(accepted)
        ledger.record_version(version)
    with stage("cleaned_data"):
        cleaned, _ = cleaning.clean(accepted, load_spec(spec_path))
    with stage("data_profile"):
        ledger.save_profile(profiling.learn_profile(accepted, load_spec(spec_path)), version)
    with stage("data_split"):
        training_rows, holdout, _ = features.split(cleaned, load_spec(spec_path))
    with stage("feature_pipeline"):
        pipeline = features.fit_feature_pipeline(training_rows, load_spec(spec_path))
    with stage("feature_pipeline_features_are_valid"):
        spec = load_spec(spec_path)
        blocking(
            feature_quality.validate_features(pipeline, training_rows, holdout, spec, docs_folder("features")),
            "features",
        )
    with stage("candidate_models.plan_candidates"):
        names = list(candidates.candidates(load_spec(spec_path)))
    tuned = {}
    for name in names:  # a step each: each transforms the training split itself
        with stage(f"candidate_models.tune_candidate[{name}]"):
            spec = load_spec(spec_path)
            inputs = candidates.transformed(pipeline, training_rows)
            target = training_rows[spec.problem.target]
            tuned[name] = candidates.tune(name, candidates.candidates(spec)[name], inputs, target, spec)
    with stage("trained_model"):
        load_spec(spec_path)
        model = training.ship(training.select(tuned.values()), pipeline, len(training_rows))
    with stage("evaluation_report"):
        spec = load_spec(spec_path)
        result = evaluation.evaluate(model, holdout, spec, tuned, pipeline)
        folder = UPath(artifacts).joinpath("reports", spec.name, run_id)
        for name, png in result.plots.items():
            write_atomically(folder / f"{name}.png", png)
        links = {name: f"![{name}]({name}.png)" for name in result.plots}
        write_atomically(folder / "report.md", evaluation.render_report(result, spec, model, links).encode())
    with stage("challenger_model"):
        spec = load_spec(spec_path)
        schema = features.input_schema(model.pipeline.named_steps["features"], training_rows, spec, model.classes)
        labels = registry.lineage_labels(
            spec=spec, data_version=version, run_id=run_id, metrics=result.metrics, model=model
        )
        challenger = registry_for(spec).save(
            model,
            schema=schema,
            labels=labels,
            metrics=result.metrics,
            training_rows=features.RowIds.of(training_rows, spec),
            reference=reference_sample(model, training_rows, schema),
        )
    with stage("challenger_model_challenger_beats_champion"):
        spec = load_spec(spec_path)
        verdict = promotion.gate(challenger, holdout, spec, registry_for(spec))
        if not verdict.promote:
            raise SystemExit(f"{challenger.tag} did not pass the promotion gate: {verdict.summary}")
    with stage("champion_model"):
        spec = load_spec(spec_path)
        models = registry_for(spec)
        verdict = promotion.gate(challenger, holdout, spec, models)  # the asset judges again, as it does
        evidence = {"challenger": verdict.challenger, "champion": verdict.champion}
        if verdict.rows:
            evidence["rows"] = verdict.rows.metadata()
        by = f"promotion gate ({getpass.getuser()})"
        change = models.promote(
            challenger.tag, kind="gate", by=by, reason=verdict.summary, run_id=run_id, evidence=evidence
        )
        models.version(change.tag)
    print(f"{spec.name}: {len(training_rows)} training rows, {model.candidate} chosen, champion {change.tag}")
    return {"stages": seconds, "metrics": result.metrics, "candidate": model.candidate}


def _plain_child(args: argparse.Namespace) -> dict:
    imported = time.time()
    outcome = plain_pipeline(args.spec, args.out)
    return {"imported": imported, "finished": time.time(), **outcome}


def _dagster_child(args: argparse.Namespace) -> dict:
    """``mlplatform run``'s path for a single-file source (cli._run), timed at each stage; the parent set
    MLPLATFORM_HOME, MLPLATFORM_SPEC, DAGSTER_HOME and BENTOML_HOME as ``--home`` and ``--spec`` do."""
    import dagster as dg

    from mlplatform import cli, definitions, summary
    from mlplatform.resources.artifacts import ArtifactIOManager
    from mlplatform.settings import Settings

    imported = time.time()
    probes: list[tuple[str, float, float]] = []
    _time_calls(ArtifactIOManager, "handle_output", "io_write", probes)
    _time_calls(ArtifactIOManager, "load_input", "io_read", probes)
    _time_calls(dg.DagsterInstance, "handle_new_event", "event_log", probes)
    dagster_home = Path(os.environ["DAGSTER_HOME"])
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cli.instance_config(), dagster_home / "dagster.yaml")
    with dg.DagsterInstance.get() as instance:
        opened = time.time()
        result = dg.execute_job(
            definitions.reconstructable_job(definitions.MATERIALIZE_ALL, Settings.from_env()),
            instance=instance,
            run_config=definitions.run_config(args.spec, progress=True),
            tags={"mlplatform/spec": str(args.spec), "mlplatform/launched_by": "bench/pipeline.py"},
        )
        returned = time.time()
        if not result.success:
            raise SystemExit(f"run {result.run_id} failed: {summary.failures(result)}")
        print(summary.render(instance, Settings.from_env(), [result.run_id], []))
        summarized = time.time()
    marks = {"imported": imported, "opened": opened, "returned": returned, "summarized": summarized}
    return {**marks, "finished": time.time(), "run_id": result.run_id, "probes": probes}


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


def run_side(side: str, spec: Path, home: Path, env: dict[str, str], log: Path, profile: Path | None = None) -> dict:
    """One child process in a new home folder, as ``mlplatform run --home HOME --spec SPEC`` would use it."""
    timings = home.with_suffix(".timings.json")
    command = [sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
    command += [__file__, "--child", side, "--spec", str(spec), "--out", str(home), "--timings", str(timings)]
    homes = {"MLPLATFORM_HOME": home, "MLPLATFORM_SPEC": spec, "DAGSTER_HOME": home / "dagster"}
    env = {**env, **{key: str(value) for key, value in homes.items()}, "BENTOML_HOME": str(home / "bentoml")}
    load, started = os.getloadavg()[0], time.time()
    done = common.run_child(command, env, log)
    measured = {"side": side, "wall": done.wall, "cpu": done.cpu, "load": load}
    measured |= {"started": started, "exited": started + done.wall, **json.loads(timings.read_text())}
    if side == "dagster":
        measured |= read_run(home / "dagster", measured["run_id"])
    return measured


def read_run(dagster_home: Path, run_id: str) -> dict:
    """The run's start and end, each step's span, the number of events and the holdout metrics, from the
    instance the child wrote."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        stats = instance.get_run_stats(run_id)
        steps = sorted(
            ((step.step_key, step.start_time, step.end_time) for step in instance.get_run_step_stats(run_id)),
            key=lambda step: step[1],
        )
        events = len(instance.all_logs(run_id))
        report = instance.get_latest_materialization_event(dg.AssetKey("evaluation_report")).asset_materialization
        model = instance.get_latest_materialization_event(dg.AssetKey("trained_model")).asset_materialization
    metrics = report.metadata["metrics"].value  # exact: the holdout_* entries are rounded for people
    run = {"run_start": stats.start_time, "run_end": stats.end_time, "events": events}
    return run | {"steps": steps, "metrics": metrics, "candidate": model.metadata["candidate"].value}


def breakdown(dagster: dict, plain: dict) -> tuple[list[tuple], list[tuple[str, float]]]:
    """Per-step rows (step, plain, dagster, io read, io write, event log, dagster - plain - those) in the order the
    steps ran, and the decomposition of dagster wall - plain wall into named parts that sum to it exactly."""
    probes = dagster["probes"]

    def spent(kind: str, start: float, end: float) -> float:
        return sum(e - s for k, s, e in probes if k == kind and start <= s < end)

    rows = []
    for step, start, end in dagster["steps"]:
        parts = [spent(kind, start, end) for kind in ("io_read", "io_write", "event_log")]
        rows.append((step, plain["stages"].get(step), end - start, *parts, end - start - sum(parts)))
    shown = {row[0] for row in rows}
    rows += [
        (stage, seconds, None, None, None, None, None)
        for stage, seconds in plain["stages"].items()
        if stage not in shown
    ]
    for index, row in enumerate(rows):
        if row[2] is not None:
            rows[index] = (*row[:6], row[6] - (row[1] or 0.0))
    in_steps = sum(end - start for _, start, end in dagster["steps"])
    plain_other = plain["finished"] - plain["imported"] - sum(plain["stages"].values())
    parts = [
        ("process start + imports (dagster, Definitions)", _imports(dagster) - _imports(plain)),
        ("instance + run setup, until RUN_START", dagster["run_start"] - dagster["imported"]),
        ("IO manager reads (Parquet/joblib)", sum(row[3] or 0.0 for row in rows)),
        ("IO manager writes (Parquet/joblib)", sum(row[4] or 0.0 for row in rows)),
        ("event log writes inside steps (SQLite)", sum(row[5] or 0.0 for row in rows)),
        ("asset bodies + step framework - plain stages", sum(row[6] or 0.0 for row in rows if row[2] is not None)),
        ("plain stages with no Dagster step", -sum(row[1] for row in rows if row[2] is None)),
        ("orchestration between steps (and its events)", dagster["run_end"] - dagster["run_start"] - in_steps),
        ("run teardown, RUN_SUCCESS to execute_job's return", dagster["returned"] - dagster["run_end"]),
        ("summary + instance close", dagster["finished"] - dagster["returned"]),
        ("plain script outside its stages", -plain_other),
        ("interpreter exit", (dagster["exited"] - dagster["finished"]) - (plain["exited"] - plain["finished"])),
    ]
    return rows, parts


def _imports(measured: dict) -> float:
    return measured["imported"] - measured["started"]


def prepare(rows: int, bundled_rows: int, folder: Path) -> Path:
    """The benchmark spec: the bundled example's, with the fixed training budget, reading the bundled CSV or a
    synthetic file of ``rows`` rows (written once, untimed)."""
    from mlplatform.lib.spec import default_spec_path

    if rows == bundled_rows:
        data = default_spec_path().parent / "penguins.csv"
    else:
        print(f"writing {rows:,} synthetic rows to {folder} (not timed)", flush=True)
        data = common.synthetic_csv(folder, rows)
    return common.write_spec(folder, data, FIXED_TRAINING)


def measure_size(rows: int, spec: Path, folder: Path, repeats: int, env: dict[str, str], profile: Path | None) -> dict:
    runs: dict[str, list[dict]] = {"plain": [], "dagster": []}
    for index in range(repeats):
        order = ("plain", "dagster") if index % 2 == 0 else ("dagster", "plain")  # alternate against drift
        for side in order:
            home = folder / f"{side}-{index}"
            measured = run_side(side, spec, home, env, folder / f"{side}-{index}.log")
            runs[side].append(measured)
            print(
                f"  {rows:>9,} rows  run {index + 1}/{repeats}  {side:<7} {measured['wall']:7.2f} s  "
                f"(load average {measured['load']:.2f})",
                flush=True,
            )
            shutil.rmtree(home, ignore_errors=True)  # keep the disk small at 1M rows; the logs stay
    if profile:
        target = profile / f"profile-dagster-{rows}.pstats"
        profile.mkdir(parents=True, exist_ok=True)
        run_side("dagster", spec, folder / "profiled", env, folder / "profiled.log", profile=target)
        print(f"  cProfile of one dagster run: {target}")
    return {"rows": rows, "repeats": repeats, "runs": runs}


def mismatches(size: dict) -> list[str]:
    """Every run that did not reach the first plain run's holdout metrics and chosen candidate, exactly."""
    reference = size["runs"]["plain"][0]
    found = []
    for side, runs in size["runs"].items():
        for index, run in enumerate(runs):
            differing = {
                name: (value, run["metrics"].get(name))
                for name, value in reference["metrics"].items()
                if not abs(value - run["metrics"].get(name, float("nan"))) <= 1e-12
            }
            if differing or run["candidate"] != reference["candidate"]:
                found.append(f"{size['rows']:,} rows, {side} run {index + 1}: {run['candidate']} {differing}")
    return found


def report(size: dict) -> None:
    rows, runs = size["rows"], size["runs"]
    best = {side: min(runs[side], key=lambda run: run["wall"]) for side in runs}

    def after_imports(run: dict) -> float:
        return run["finished"] - run["imported"]

    def summary(side: str, measure) -> tuple[float, float]:
        values = [measure(run) for run in runs[side]]
        return min(values), statistics.median(values)

    loads = [run["load"] for side in runs for run in runs[side]]
    lines = [
        f"\n== {rows:,} rows, {size['repeats']} run(s) per side: best / median seconds "
        f"(1-minute load average {min(loads):.1f} to {max(loads):.1f} at the runs' starts) ==",
        "  side       wall (start to exit)     CPU (user+sys)      after imports",
    ]
    for side in ("plain", "dagster"):
        cells = [summary(side, measure) for measure in (lambda r: r["wall"], lambda r: r["cpu"], after_imports)]
        lines.append(f"  {side:<8}" + "".join(f"  {low:8.2f} / {mid:8.2f}" for low, mid in cells))

    step_rows, parts = breakdown(best["dagster"], best["plain"])
    width = max(len(row[0]) for row in step_rows)
    header = ("plain s", "dagster s", "io read", "io write", "event log", "extra")
    lines += ["", f"  {'step (best runs)':<{width}}" + "".join(f"{name:>{len(name) + 3}}" for name in header)]
    for step, *numbers in step_rows:
        cells = ("-" if n is None else f"{n:.2f}" for n in numbers)
        aligned = (f"{cell:>{len(name) + 3}}" for cell, name in zip(cells, header, strict=True))
        lines.append(f"  {step:<{width}}" + "".join(aligned))
    overhead = best["dagster"]["wall"] - best["plain"]["wall"]
    lines += ["", f"  where dagster's extra {overhead:+.2f} s goes (best dagster run - best plain run):"]
    lines += [f"    {name:<52} {seconds:+7.2f} s" for name, seconds in parts]
    lines.append(f"    ({best['dagster']['events']} events in the run's event log)")

    def ratio(measure) -> float:
        return summary("dagster", measure)[0] / summary("plain", measure)[0]

    median_ratio = summary("dagster", lambda r: r["wall"])[1] / summary("plain", lambda r: r["wall"])[1]
    print("\n".join(lines) + "\n")
    size["ratio"] = ratio(lambda r: r["wall"])
    common.ratio_line(
        f"dagster/plain at {rows} rows",
        size["ratio"],
        f"best wall; median wall {median_ratio:.2f}x, best CPU {ratio(lambda r: r['cpu']):.2f}x, "
        f"best after imports {ratio(after_imports):.2f}x",
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", help="data sizes; 344 (bundled) is the bundled CSV")
    parser.add_argument("--repeats", type=int, help="runs per side and size (default: 5 up to 100,000 rows, else 3)")
    parser.add_argument("--quick", action="store_true", help="344 and 100,000 rows, one run per side")
    parser.add_argument("--profile", action="store_true", help="also write a cProfile of one dagster run per size")
    parser.add_argument("--omp-threads", type=int, help="set OMP_NUM_THREADS in every child (default: unset)")
    parser.add_argument("--workdir", type=Path, help="keep data and logs here (default: a temp dir, removed)")
    common.add_standard_arguments(parser, "the bundled 344 rows, one run per side, no warm-up")
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

    bundled_rows = sum(1 for _ in (default_spec_path().parent / "penguins.csv").open()) - 1
    if args.smoke:
        sizes = args.rows or [bundled_rows]
    else:
        sizes = args.rows or ([bundled_rows, 100_000] if args.quick else [bundled_rows, 1_000_000])
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mlplatform-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = common.child_environment({"OMP_NUM_THREADS": str(args.omp_threads)} if args.omp_threads else None)
    print(common.machine(), flush=True)
    sizes_measured = []
    try:
        if not args.smoke:  # one run is the smoke size's whole point: it pays what a first run pays
            print(f"warming up (file caches; not timed) in {workdir}", flush=True)
            warm = prepare(bundled_rows, bundled_rows, workdir / "warm-up")
            for side in ("plain", "dagster"):
                run_side(side, warm, workdir / "warm-up" / side, env, workdir / "warm-up" / f"{side}.log")
        for rows in sizes:
            folder = workdir / str(rows)
            spec = prepare(rows, bundled_rows, folder)
            repeats = args.repeats or (1 if args.quick or args.smoke else 5 if rows <= 100_000 else 3)
            profile = args.results if args.profile else None
            sizes_measured.append(measure_size(rows, spec, folder, repeats, env, profile))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\nWall seconds per child process (interpreter start to exit); ratio = best dagster / best plain.")
    for size in sizes_measured:
        report(size)
    print(f"\nall measurements: {common.save_results(args.results, 'pipeline', sizes_measured)}")
    differing = [line for size in sizes_measured for line in mismatches(size)]
    if not differing:
        print("every run of both sides reached the same holdout metrics and chose the same candidate")
    largest = max(sizes_measured, key=lambda size: size["rows"])
    target = Target(
        "dagster ÷ plain, best wall",
        largest["ratio"],
        "<=",
        TARGET_RATIO,
        largest["rows"] >= TARGET_ROWS,
        f"at {TARGET_ROWS:,} rows",
    )
    return common.verdict([target], smoke=args.smoke, different_work=differing)


if __name__ == "__main__":
    raise SystemExit(main())
