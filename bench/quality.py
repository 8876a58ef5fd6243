"""Great Expectations through ``gx_suites.validate`` versus pure pandas computing the same pass/fail answers.

GX is timed the way the pipeline pays for it: ``gx_suites.validate(frame, rules, ...)``, which builds the suite
and runs it through the process's shared ephemeral context (a BOOLEAN_ONLY pass; details, a context of their
own and Data Docs only on failure). The one-time ``import great_expectations`` and a first warm-up validation
(which also builds the shared context) are excluded. The pandas side
answers, rule by rule, exactly the question GX answers (same null handling, same ``mostly`` arithmetic);
before any timing both sides are run on a frame with planted faults and must agree rule by rule.

    .venv/bin/python bench/quality.py                  # 1,000,000 rows, 5 repeats, plus the real suites
    .venv/bin/python bench/quality.py --quick          # 100,000 rows, 2 repeats, synthetic frame only
    .venv/bin/python bench/quality.py --pipeline       # also `mlplatform run` the whole graph at --rows
    .venv/bin/python bench/quality.py --smoke          # 2,000 rows, 1 repeat, every section (under a minute)

Sections: the 1M x 10 frame with every kind of rule our suites use; the 3-rule suite measured in the
issue; one suite per rule kind (what one rule of each kind costs); a failing batch (the detailed pass
and Data Docs); the real suites at --rows synthetic penguins and the whole features check; optionally the
whole graph.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from bench import common
from bench.common import Target, seconds
from mlplatform.lib.quality import builders, gx_suites, profiling
from mlplatform.lib.quality.builders import NUMERIC_TYPES, Rule

MEASUREMENTS = [f"m{i}" for i in range(6)]
CATEGORIES = {"kind": ["a", "b", "c"], "site": ["north", "south", "east", "west"], "sex": ["female", "male"]}


def make_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` x 10: six float measurements (five with ~0.5% missing), a count, three text categories."""
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {}
    for index, name in enumerate(MEASUREMENTS):
        values = rng.normal(100.0 * (index + 1), 10.0 * (index + 1), size=rows).round(2)
        if index:
            values[rng.random(rows) < 0.005] = np.nan
        columns[name] = values
    columns["count"] = rng.integers(0, 1000, size=rows)
    for name, values in CATEGORIES.items():
        columns[name] = rng.choice(np.array(values, dtype=object), size=rows)
    frame = pd.DataFrame(columns)
    frame.loc[rng.random(rows) < 0.03, "sex"] = None
    return frame


def rule(expectation: str, **kwargs) -> Rule:
    return Rule(expectation, kwargs, "error", "bench")


def all_kinds(columns: list[str]) -> list[Rule]:
    """Every kind of rule our raw-batch and feature suites use, over all ten columns."""
    numeric = [*MEASUREMENTS, "count"]
    rules = [rule("expect_column_to_exist", column=c) for c in columns]
    rules += [rule("expect_column_values_to_not_be_null", column=c) for c in ("m0", "count", "kind", "site")]
    rules += [rule("expect_column_values_to_not_be_null", column=c, mostly=0.9) for c in [*MEASUREMENTS[1:], "sex"]]
    rules += [rule("expect_column_values_to_be_between", column=c, min_value=-1e6, max_value=1e6) for c in numeric]
    rules += [rule("expect_column_values_to_be_in_set", column=c, value_set=v) for c, v in CATEGORIES.items()]
    rules += [rule("expect_column_values_to_be_in_type_list", column=c, type_list=list(NUMERIC_TYPES)) for c in numeric]
    rules.append(rule("expect_compound_columns_to_be_unique", column_list=list(columns), mostly=0.5))
    rules.append(rule("expect_column_mean_to_be_between", column="m0", min_value=50, max_value=150))
    rules.append(rule("expect_column_unique_value_count_to_be_between", column="kind", min_value=2))
    return rules


def three_rules() -> list[Rule]:
    return [
        rule("expect_column_values_to_not_be_null", column="m0"),
        rule("expect_column_values_to_be_between", column="m0", min_value=-1e6, max_value=1e6),
        rule("expect_column_values_to_be_in_set", column="kind", value_set=CATEGORIES["kind"]),
    ]


def _mostly(considered: int, unexpected: int, mostly: float) -> bool:
    return considered == 0 or (considered - unexpected) / considered >= mostly


def _column_exists(frame: pd.DataFrame, column: str) -> bool:
    return column in frame.columns


def _not_null(frame: pd.DataFrame, column: str, mostly: float = 1.0) -> bool:
    return _mostly(len(frame), int(frame[column].isna().sum()), mostly)


def _between(frame, column, min_value=None, max_value=None, mostly=1.0, strict_min=False, strict_max=False) -> bool:
    values = frame[column]
    outside = np.zeros(len(values), dtype=bool)
    if min_value is not None:
        outside |= (values <= min_value) if strict_min else (values < min_value)
    if max_value is not None:
        outside |= (values >= max_value) if strict_max else (values > max_value)
    return _mostly(int(values.notna().sum()), int(outside.sum()), mostly)


def _in_set(frame: pd.DataFrame, column: str, value_set: list, mostly: float = 1.0) -> bool:
    values = frame[column]
    present = values.notna()
    return _mostly(int(present.sum()), int((present & ~values.isin(value_set)).sum()), mostly)


def _in_type_list(frame: pd.DataFrame, column: str, type_list: list[str], mostly: float = 1.0) -> bool:
    values = frame[column]
    if values.dtype != object:
        return values.dtype.name in type_list
    present = values.dropna()
    return _mostly(len(present), int((~present.map(lambda v: type(v).__name__).isin(type_list)).sum()), mostly)


def _compound_unique(frame, column_list: list[str], mostly: float = 1.0, ignore_row_if="all_values_are_missing"):
    part = frame[column_list]
    if ignore_row_if == "all_values_are_missing":
        part = part[part.notna().any(axis=1)] if part.isna().all(axis=1).any() else part
    return _mostly(len(part), int(part.duplicated(keep=False).sum()), mostly)


def _bounded(value, min_value=None, max_value=None) -> bool:
    return (min_value is None or value >= min_value) and (max_value is None or value <= max_value)


def _mean_between(frame: pd.DataFrame, column: str, min_value=None, max_value=None) -> bool:
    return _bounded(frame[column].mean(), min_value, max_value)


def _unique_count_between(frame: pd.DataFrame, column: str, min_value=None, max_value=None) -> bool:
    return _bounded(frame[column].nunique(), min_value, max_value)


PANDAS: dict[str, Callable[..., bool]] = {
    "expect_column_to_exist": _column_exists,
    "expect_column_values_to_not_be_null": _not_null,
    "expect_column_values_to_be_between": _between,
    "expect_column_values_to_be_in_set": _in_set,
    "expect_column_values_to_be_in_type_list": _in_type_list,
    "expect_compound_columns_to_be_unique": _compound_unique,
    "expect_column_mean_to_be_between": _mean_between,
    "expect_column_unique_value_count_to_be_between": _unique_count_between,
}


def pandas_answers(frame: pd.DataFrame, rules: list[Rule]) -> list[bool]:
    """Per rule, does it pass? A rule on a missing column fails, as GX reports it (an error, not a pass)."""
    answers = []
    for r in rules:
        needed = r.kwargs.get("column_list") or ([] if r.expectation == "expect_column_to_exist" else [r.column])
        answers.append(all(c in frame.columns for c in needed if c) and PANDAS[r.expectation](frame, **r.kwargs))
    return answers


def gx_answers(frame: pd.DataFrame, rules: list[Rule], suite: str, docs_dir: Path | None = None) -> list[bool]:
    return [outcome.success for outcome in gx_suites.validate(frame, rules, suite, docs_dir).outcomes]


def planted_faults(frame: pd.DataFrame) -> pd.DataFrame:
    """Some rules fail, some pass narrowly: what makes GX's and our answers comparable rule by rule."""
    rows, copied = len(frame), len(frame) // 5
    # The last fifth repeats the fifth before the middle: 40% of rows are in duplicates, within mostly=0.5.
    bad = pd.concat([frame.iloc[: rows - copied], frame.iloc[rows // 2 - copied : rows // 2]], ignore_index=True)
    bad.loc[: rows // 200, "m0"] = 5e6  # between and the mean fail
    bad.loc[: rows // 100, "kind"] = "zzz"  # in_set fails
    bad.loc[: int(rows * 0.12), "m1"] = np.nan  # not-null(mostly=0.9) fails
    bad.loc[: int(rows * 0.08), "m2"] = np.nan  # not-null(mostly=0.9) passes
    return bad


def compare(frame: pd.DataFrame, rules: list[Rule], suite: str, repeats: int, docs_dir: Path | None = None) -> dict:
    """GX and pandas interleaved, so both see the same machine load; answers checked equal."""
    gx_seconds: list[float] = []
    pandas_seconds: list[float] = []
    expected = pandas_answers(frame, rules)
    answers = gx_answers(frame, rules, suite, docs_dir)
    if answers != expected:
        differing = [r.describe() for r, a, e in zip(rules, answers, expected, strict=True) if a != e]
        raise AssertionError(f"{suite}: GX and pandas disagree on {differing}")
    for _ in range(repeats):
        gx_seconds.append(seconds(lambda: gx_suites.validate(frame, rules, suite, docs_dir)))
        pandas_seconds.append(seconds(lambda: pandas_answers(frame, rules)))
    gx, pd_ = statistics.median(gx_seconds), statistics.median(pandas_seconds)
    return {
        "suite": suite,
        "rules": len(rules),
        "rows": len(frame),
        "passed": all(expected),
        "gx_best": min(gx_seconds),
        "gx_median": gx,
        "pandas_best": min(pandas_seconds),
        "pandas_median": pd_,
        "ratio": gx / pd_ if pd_ > 1e-5 else None,  # an empty suite leaves pandas nothing to do
    }


def print_table(title: str, measured: list[dict], fixed: float = 0.0) -> None:
    print(f"\n{title}")
    print(f"  {'suite':<42} {'rules':>5} {'rows':>9}  {'gx best':>8} {'median':>8}  {'pandas best':>11} {'median':>8}"
          f"  {'ratio':>6}  {'gx ms/rule':>10}")  # fmt: skip
    for m in measured:
        ratio = f"{m['ratio']:.1f}x" if m["ratio"] is not None else "-"
        print(
            f"  {m['suite']:<42} {m['rules']:>5} {m['rows']:>9}  {m['gx_best']:>8.3f} {m['gx_median']:>8.3f}"
            f"  {m['pandas_best']:>11.4f} {m['pandas_median']:>8.4f}  {ratio:>6}"
            f"  {1000 * (m['gx_median'] - fixed) / max(m['rules'], 1):>10.1f}"
        )


def machine_load() -> str:
    others = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "bench/" in command and "python" in command:
                others.append(f"{pid}: {command.strip()[:100]}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"load average {load} on {os.cpu_count()} cores; other benchmarks running: {others or 'none'}"


def synthetic_suites(rows: int, repeats: int, workdir: Path) -> list[dict]:
    frame = make_frame(rows)
    columns = [str(c) for c in frame.columns]
    rules = all_kinds(columns)
    small = planted_faults(make_frame(min(rows, 20_000), seed=1))
    for name, faulty in (("planted faults", small), ("planted faults, no 'count' column", small.drop(columns="count"))):
        expected = pandas_answers(faulty, rules)
        if gx_answers(faulty, rules, "planted") != expected:
            raise AssertionError(f"{name}: GX and pandas disagree")
        print(f"{name}: GX and pandas agree on all {len(rules)} rules ({expected.count(False)} fail)")

    docs = workdir / "docs"  # given, as the checks give it: GX builds Data Docs there only on failure
    measured = [
        compare(frame, rules, "all kinds", repeats, docs),
        compare(frame, three_rules(), "3 rules", repeats, docs),
    ]
    print_table(f"synthetic frame {rows} x {frame.shape[1]} (seconds; ratio = GX median / pandas median)", measured)
    for m in measured:
        common.ratio_line(f"gx/pandas, {m['suite']} ({m['rules']} rules, {m['rows']} rows)", m["ratio"])

    kinds = [compare(frame, [], "empty suite (fixed cost)", repeats, docs)]
    for expectation in dict.fromkeys(r.expectation for r in rules):
        chosen = [r for r in rules if r.expectation == expectation]
        kinds.append(compare(frame, chosen, expectation.removeprefix("expect_"), repeats, docs))
    print_table("one suite per rule kind (gx ms/rule: above the empty suite's time)", kinds, kinds[0]["gx_median"])

    failing = planted_faults(frame)
    fails = [compare(failing, rules, "failing batch (details + Data Docs)", max(1, repeats // 2), docs)]
    print_table("failing batch: BOOLEAN_ONLY pass, then SUMMARY pass and Data Docs", fails)
    return measured + kinds + fails


def real_suites(rows: int, repeats: int, workdir: Path) -> list[dict]:
    """The suites the pipeline runs, on ``rows`` synthetic penguins, built as the checks build them; then the
    whole features check, timed against the same check transforming every row (what it did before)."""
    from mlplatform.lib.data import cleaning, synthetic
    from mlplatform.lib.features import features
    from mlplatform.lib.quality import feature_quality, gx_suites
    from mlplatform.lib.spec import default_spec_path, load_spec

    spec = load_spec(default_spec_path())
    raw = synthetic.penguins(rows, seed=0)
    profile = profiling.learn_profile(raw, spec)
    raw_rules = builders.batch_rules(spec, [str(c) for c in raw.columns], profile, len(raw))
    cleaned, _ = cleaning.clean(raw, spec)
    training, holdout, _ = features.split(cleaned, spec)
    pipeline = features.fit_feature_pipeline(training, spec)
    names = [str(n) for n in pipeline.get_feature_names_out()]
    target = spec.problem.target
    sampled = feature_quality.transform(pipeline, [feature_quality.sample(training), feature_quality.sample(holdout)])
    numeric, _ = features.feature_columns(training[list(pipeline.feature_names_in_)], spec)
    numeric_inputs = pd.concat([training[numeric], holdout[numeric]], ignore_index=True)
    docs = workdir / "docs"  # as in checks.py: the raw batch and feature suites get a docs folder, the others not
    measured = [
        compare(raw, raw_rules, "raw_batch (batch_rules + profile)", repeats, docs),
        compare(sampled, builders.feature_rules(names), "features, sample (feature_rules)", repeats, docs),
        compare(numeric_inputs, builders.finite_rules(numeric), "feature inputs (finite_rules)", repeats),
        compare(
            training[[target]],
            builders.feature_rules([], target, spec.problem.task),
            "training_target (feature_rules)",
            repeats,
        ),
    ]
    print_table(f"the pipeline's suites on {rows} synthetic penguins", measured)

    def every_row() -> None:
        both = feature_quality.transform(pipeline, [training, holdout])
        gx_suites.validate(both, builders.feature_rules(names), "features", docs)
        gx_suites.validate(training[[target]], builders.feature_rules([], target, spec.problem.task), "training_target")

    check, unsampled = [], []
    for _ in range(repeats):
        check.append(seconds(lambda: feature_quality.validate_features(pipeline, training, holdout, spec, docs)))
        unsampled.append(seconds(every_row))
    measured.append({"suite": "features check", "gx_median": statistics.median(check), "gx_best": min(check)})
    print(
        f"features check (validate_features: sample, inputs, target): {statistics.median(check):.3f} s median; "
        f"transforming and checking every row instead: {statistics.median(unsampled):.3f} s"
    )
    total = measured[0]["gx_median"] + measured[-1]["gx_median"]
    print(f"validation in one pipeline run at {rows} rows: {total:.2f} s (raw_batch suite + features check, medians)")
    return measured


def whole_graph(rows: int, workdir: Path, warm: float, training: dict | None) -> dict:
    """`mlplatform run` on ``rows`` synthetic rows (MLPLATFORM_DEPLOY=none: nothing left serving): wall time,
    every step's duration and each check's own ``validation_seconds``, read from the runs' instance."""
    from mlplatform.settings import Settings

    spec = common.write_spec(workdir, common.synthetic_csv(workdir, rows), training)
    home = workdir / "home"
    wall = common.run_cli(["run", "--spec", str(spec)], home=home, log=workdir / "run.log").wall
    steps, validation = read_runs(Settings.from_env({"MLPLATFORM_HOME": str(home)}).dagster_home)
    checks = sum(took for name, took in steps.items() if name.endswith(("_is_valid", "_are_valid")))
    print(f"\nwhole graph, `mlplatform run` at {rows} rows: {wall:.1f} s wall (process start to exit)")
    width = max(map(len, steps))
    for name, took in steps.items():
        print(f"  {name:<{width}} {took:>6.1f} s")
    print(
        f"check steps {checks:.1f} s = {checks / wall:.1%} of the run (with the one-time GX import and input loading)"
    )
    for check, took in validation.items():
        print(f"  {check:<{width}} validate() {took:.2f} s")
    total = sum(validation.values())
    print(f"validate() {total:.2f} s = {total / wall:.1%} of the run (the first pays GX's import)")
    if warm:
        print(f"warm validation (raw_batch suite + features check), measured above: {warm:.2f} s = {warm / wall:.1%}")
    return {"rows": rows, "wall": wall, "steps": steps, "check_steps": checks, "validate": validation}


def read_runs(dagster_home: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Every step's seconds and every check's own ``validation_seconds`` metadata (its quality calls' clock),
    over all the runs in the instance (a fresh home: `mlplatform run` validates, then trains, in runs of
    their own); fails unless one of them trained."""
    import dagster as dg

    from mlplatform import definitions

    steps: dict[str, float] = {}
    validation: dict[str, float] = {}
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = list(reversed(instance.get_runs()))
        jobs = [run.job_name for run in runs]
        if definitions.TRAIN_AND_EVALUATE not in jobs:
            raise RuntimeError(f"`mlplatform run` trained nothing: its runs were {jobs} in {dagster_home}")
        for run in runs:
            for stats in instance.get_run_step_stats(run.run_id):
                steps[stats.step_key] = stats.end_time - stats.start_time
            of_type = dg.DagsterEventType.ASSET_CHECK_EVALUATION
            for record in instance.get_records_for_run(run.run_id, of_type=of_type).records:
                evaluation = record.event_log_entry.dagster_event.event_specific_data
                if "validation_seconds" in evaluation.metadata:  # the quality checks; the promotion gate has none
                    validation[evaluation.check_name] = float(evaluation.metadata["validation_seconds"].value)
    return steps, validation


SMOKE = {"rows": 2_000, "repeats": 1}
TARGET_ROWS = 1_000_000  # issue #3's targets are for a 1,000,000-row frame and a whole run at that size


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, help="rows of the synthetic frames (default 1,000,000; --quick 100,000)")
    parser.add_argument("--repeats", type=int, help="timed runs per side and suite (default 5; --quick 2)")
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 2 repeats, no real suites")
    parser.add_argument("--no-real", action="store_true", help="skip the pipeline's own suites")
    parser.add_argument("--pipeline", action="store_true", help="also run the whole graph at --rows once")
    common.add_standard_arguments(parser, "2,000 rows, 1 repeat, every section, the whole graph on a small budget")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.repeats = args.rows or SMOKE["rows"], args.repeats or SMOKE["repeats"]
        args.pipeline = True
    return args


def targets(results: dict) -> list[Target]:
    applies = results["rows"] >= TARGET_ROWS
    [three] = [m for m in results["synthetic"] if m["suite"] == "3 rules"]
    share = None
    if "pipeline" in results:
        share = sum(results["pipeline"]["validate"].values()) / results["pipeline"]["wall"]
    at = f"at {TARGET_ROWS:,} rows"
    return [
        Target("GX ÷ pandas, 3 rules", three["ratio"], "<=", 3.0, applies, at),
        Target("validate() share of `mlplatform run`", share, "<=", 0.10, applies, at),
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    repeats = args.repeats or (2 if args.quick else 5)
    print(f"bench/quality.py: {rows} rows, {repeats} repeats; {machine_load()}")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    started = time.perf_counter()
    import great_expectations  # noqa: F401  (the one-time import, excluded from every timing below)

    imported = time.perf_counter() - started
    print(f"import great_expectations: {imported:.1f} s (not counted)")
    tiny = make_frame(100)
    started = time.perf_counter()
    gx_suites.validate(tiny, all_kinds([str(c) for c in tiny.columns]), "warm-up")
    first_call = time.perf_counter() - started
    print(f"first validation in this process (100 rows): {first_call:.2f} s (not counted)")

    with tempfile.TemporaryDirectory(prefix="bench-quality-") as folder:
        workdir = Path(folder)
        results: dict = {"rows": rows, "repeats": repeats, "load_before": machine_load()}
        results["import_seconds"], results["first_call_seconds"] = imported, first_call
        results["synthetic"] = synthetic_suites(rows, repeats, workdir)
        if not (args.quick or args.no_real):
            results["real"] = real_suites(rows, repeats, workdir)
        if args.pipeline:
            real = results.get("real", [])
            measured_warm = real[0]["gx_median"] + real[-1]["gx_median"] if real else 0.0
            training = common.FIXED_TRAINING if args.smoke else None
            results["pipeline"] = whole_graph(rows, workdir, measured_warm, training)
    results["load_after"] = machine_load()
    print(f"\n{results['load_after']}")
    print(f"saved {common.save_results(args.results, 'quality', results)}")
    return common.verdict(targets(results), smoke=args.smoke)


if __name__ == "__main__":
    raise SystemExit(main())
