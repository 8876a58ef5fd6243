"""The drift report (``mlplatform.lib.monitoring.drift.compare``) on a million logged predictions versus the
plain way: ``scipy.stats.ks_2samp`` and pandas ``value_counts`` per column.

    .venv/bin/python bench/drift.py                   # 1,000,000 logged rows, 3 runs per side (~1 min)
    .venv/bin/python bench/drift.py --rows 200000 --repeats 5
    .venv/bin/python bench/drift.py --smoke           # 20,000 rows, one run per side (seconds)

Untimed, once: a reference sample of 5,000 synthetic penguins (seed 0; ``species`` as the model's prediction), and
``--rows`` synthetic penguins (seed 1) with longer bills and fewer Biscoe birds, logged through ``PredictionLog``
(the service's own writer) as Parquet files of 100,000 rows. Each run is a child process, so its peak memory
(VmHWM: the interpreter, pandas and scipy included) is its own: it reads the log with
``read_prediction_log`` (the columns compared only) and computes, for the six inputs and the prediction,

- ours: ``drift.compare``: PSI, exact KS distance and p-value, chi-square, Cramér's V, missing shares,
  Benjamini-Hochberg and the verdict;
- baseline: ``ks_2samp`` on each number column's present values, ``value_counts(normalize=True)`` of each
  category column on each side, and the missing shares: less than ours computes.

Both sides must agree on every KS distance (1e-9) and every category share (1e-12), or the bench exits 1.
Targets (issue #12): read + compare ≤ 10 s and ≤ 2 GB peak memory at 1,000,000 rows; the KS distance within
0.005 of scipy's exact statistic (ours is exact, so the difference is rounding).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench import common
from bench.common import Target

PROJECT = "penguins"
TAG = "penguins:bench"
REFERENCE_ROWS = 5_000
FULL_ROWS = 1_000_000
FILE_ROWS = 100_000
SCHEMA = {
    "project": PROJECT,
    "task": "classification",
    "target": "species",
    "classes": ["Adelie", "Chinstrap", "Gentoo"],
    "columns": [
        *({"name": name, "kind": "number", "type": "float"} for name in (
            "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"
        )),
        {"name": "island", "kind": "category", "type": "string", "categories": ["Biscoe", "Dream", "Torgersen"]},
        {"name": "sex", "kind": "category", "type": "string", "categories": ["female", "male"]},
    ],
}  # fmt: skip


def served(rows: int) -> pd.DataFrame:
    """Synthetic penguins with two inputs moved: bills 1.5 mm longer, a third of the Biscoe birds seen on Dream."""
    from mlplatform.lib.data import synthetic

    frame = synthetic.penguins(rows, seed=1)
    moved = (frame["island"] == "Biscoe") & (np.random.default_rng(2).random(rows) < 1 / 3)
    return frame.assign(bill_length_mm=frame["bill_length_mm"] + 1.5, island=frame["island"].where(~moved, "Dream"))


def write_inputs(folder: Path, rows: int) -> tuple[Path, Path]:
    """The reference sample as Parquet, and ``rows`` predictions logged by the prediction service's writer."""
    from mlplatform.lib.data import synthetic
    from mlplatform.lib.serving.prediction_log import PredictionLog

    inputs = [column["name"] for column in SCHEMA["columns"]]
    reference = synthetic.penguins(REFERENCE_ROWS, seed=0).rename(columns={"species": "prediction"})
    reference_path = folder / "reference.parquet"
    reference[[*inputs, "prediction"]].to_parquet(reference_path, index=False)
    frame = served(rows)
    records = frame[inputs].astype(object).where(frame[inputs].notna(), None).to_dict("records")
    answers = [{"prediction": species, "probabilities": None} for species in frame["species"]]
    log_folder = folder / "predictions"
    for first in range(0, rows, FILE_ROWS):  # one writer per file: as if the service had flushed every 100,000 rows
        log = PredictionLog(log_folder, schema=SCHEMA, model_tag=TAG, flush_seconds=3600, max_queued_rows=FILE_ROWS)
        for start in range(first, min(first + FILE_ROWS, rows), 1_000):  # requests of 1,000 rows
            end = min(start + 1_000, first + FILE_ROWS, rows)
            log.append(records[start:end], answers[start:end], endpoint="predict_batch", latency_ms=1.0)
        log.close(timeout=600)
        if log.dropped_rows:
            raise RuntimeError(f"the prediction log dropped {log.dropped_rows} rows while the bench wrote it")
    return reference_path, log_folder


def child(side: str, reference_path: Path, log_folder: Path) -> dict:
    """One side, in this (fresh) process: read the log, compare, report time, peak memory and the statistics."""
    from mlplatform.lib.monitoring import drift
    from mlplatform.lib.serving.prediction_log import read_prediction_log
    from mlplatform.lib.spec import DriftSettings

    columns = drift.columns_of(SCHEMA)
    reference = pd.read_parquet(reference_path)
    started = time.perf_counter()
    current = read_prediction_log(log_folder, PROJECT, columns=[column.name for column in columns])
    read = time.perf_counter() - started
    started = time.perf_counter()
    if side == "ours":
        report = drift.compare(reference, current, columns, DriftSettings(), TAG)
        statistics = {
            column.name: {
                "ks": column.ks,
                "shares": dict(zip(column.bins, column.current_shares, strict=True))
                if column.kind == "category"
                else {},
                "missing": column.current_missing,
                "drifted": column.drifted,
            }
            for column in report.columns
        }
    else:
        statistics = baseline(reference, current, columns)
    compared = time.perf_counter() - started
    peak = peak_memory()
    return {"read": read, "compare": compared, "peak_bytes": peak, "rows": len(current), "statistics": statistics}


def peak_memory() -> int:
    """This process's peak resident memory in bytes since it started its program: VmHWM, the high-water mark of its
    own address space. (``ru_maxrss`` would not do: Linux carries it over from the parent across fork and exec,
    and the parent held the million rows it logged.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status: peak memory is measured on Linux only")


def baseline(reference: pd.DataFrame, current: pd.DataFrame, columns) -> dict:
    from scipy import stats

    statistics = {}
    for column in columns:
        ours, theirs = reference[column.name], current[column.name]
        found = {"ks": None, "shares": {}, "missing": float(theirs.isna().mean())}
        if column.kind == "number":
            present = theirs.dropna().to_numpy(dtype="float64")
            found["ks"] = float(stats.ks_2samp(ours.dropna().to_numpy(dtype="float64"), present).statistic)
        else:
            shares = theirs.value_counts(normalize=True, dropna=False)
            found["shares"] = {str(k): float(v) for k, v in shares.items() if not pd.isna(k)}
            ours.value_counts(normalize=True, dropna=False)  # the reference side, as a plain check computes it
        statistics[column.name] = found
    return statistics


def run_side(side: str, reference_path: Path, log_folder: Path, log: Path) -> dict:
    command = [sys.executable, __file__, "--child", side, "--reference", str(reference_path), "--log", str(log_folder)]
    done = common.run_child(command, common.child_environment(), log)
    return json.loads(done.output.strip().splitlines()[-1])


def disagreements(ours: dict, baseline: dict) -> tuple[list[str], float]:
    """What the sides computed differently, and the largest difference between the KS distances."""
    different, largest = [], 0.0
    for name, theirs in baseline["statistics"].items():
        mine = ours["statistics"][name]
        if theirs["ks"] is not None:
            gap = abs(mine["ks"] - theirs["ks"])
            largest = max(largest, gap)
            if gap > 1e-9:
                different.append(f"{name}: KS distance {mine['ks']!r} here, {theirs['ks']!r} by ks_2samp")
        for category, share in theirs["shares"].items():
            if abs(mine["shares"].get(category, -1.0) - share) > 1e-12:
                different.append(f"{name}={category}: share {mine['shares'].get(category)} here, {share} by pandas")
        if abs(mine["missing"] - theirs["missing"]) > 1e-12:
            different.append(f"{name}: missing share {mine['missing']} here, {theirs['missing']} by pandas")
    return different, largest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_standard_arguments(parser, "20,000 logged rows, one run per side")
    parser.add_argument("--rows", type=int, help=f"logged rows (default {FULL_ROWS:,})")
    parser.add_argument("--repeats", type=int, help="runs per side (default 3; 1 with --smoke)")
    parser.add_argument("--child", choices=("ours", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--reference", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.reference, args.log)))
        return common.EXIT_OK
    rows = args.rows or (20_000 if args.smoke else FULL_ROWS)
    repeats = args.repeats or (1 if args.smoke else 3)
    print(f"bench/drift.py: {rows:,} logged rows x {len(SCHEMA['columns'])} inputs + prediction, {repeats} run(s) "
          f"per side; {common.machine()}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as folder:
        workdir = Path(folder)
        started = time.perf_counter()
        reference_path, log_folder = write_inputs(workdir, rows)
        files = len(list(log_folder.rglob("*.parquet")))
        print(f"logged {rows:,} rows in {files} Parquet file(s) in {time.perf_counter() - started:.1f} s (untimed)")
        runs = {"ours": [], "baseline": []}
        for index in range(repeats):
            for side in ("baseline", "ours"):  # alternated, so a change in the machine's load hits both
                runs[side].append(run_side(side, reference_path, log_folder, workdir / f"{side}-{index}.log"))
    for side, measured in runs.items():
        total = [run["read"] + run["compare"] for run in measured]
        print(
            f"{side:<9} read {min(run['read'] for run in measured):6.2f} s  compare "
            f"{min(run['compare'] for run in measured):6.2f} s  best total {min(total):6.2f} s  peak "
            f"{max(run['peak_bytes'] for run in measured) / 1e9:5.2f} GB",
            flush=True,
        )
    ours, theirs = runs["ours"], runs["baseline"]
    different, largest_gap = disagreements(ours[0], theirs[0])
    drifted = [name for name, found in ours[0]["statistics"].items() if found["drifted"]]
    print(f"drifted (ours): {', '.join(drifted) or 'none'}; largest |KS ours - ks_2samp|: {largest_gap:.3g}")
    best_ours = min(run["read"] + run["compare"] for run in ours)
    common.ratio_line(
        "drift report ÷ ks_2samp + value_counts, compare only",
        min(run["compare"] for run in ours) / min(run["compare"] for run in theirs),
        "ours computes PSI, chi-square, Cramér's V and the verdict as well",
    )
    common.ratio_line(
        "drift report ÷ ks_2samp + value_counts, read + compare",
        best_ours / min(run["read"] + run["compare"] for run in theirs),
    )
    peak = max(run["peak_bytes"] for run in ours) / 1e9
    results = {"rows": rows, "repeats": repeats, "machine": common.machine(), "runs": runs, "drifted": drifted}
    print(f"saved {common.save_results(args.results, 'drift', results)}")
    full = rows >= FULL_ROWS
    condition = "at 1,000,000 rows"
    targets = [
        Target("drift read + compare seconds", best_ours, "<=", 10.0, applies=full, condition=condition),
        Target("drift peak memory GB", peak, "<=", 2.0, applies=full, condition=condition),
        Target("|KS distance - scipy's exact|", largest_gap, "<=", 0.005),
    ]
    if not {"bill_length_mm", "island"} <= set(drifted):
        different.append(f"the shifted bill_length_mm and island were not both flagged (drifted: {drifted})")
    return common.verdict(targets, smoke=args.smoke, different_work=different)


if __name__ == "__main__":
    raise SystemExit(main())
