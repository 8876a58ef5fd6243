"""One histogram gradient boosting fit with 1, 2 or the default number of OpenMP threads, on an idle machine and
beside a busy loop on one core: the measurement behind ``mlplatform.lib.training.threads`` (threads by training size).

    .venv/bin/python bench/threads.py                       # 1,000 to 30,000 rows, 5 fits per cell (~2 min)
    .venv/bin/python bench/threads.py --rows 3000 --repeat 3
    .venv/bin/python bench/threads.py --smoke               # 1,000 rows, one fit per cell (seconds)

Each cell's ratio is the libraries' default threads ÷ the threads the platform's policy gives one search
(``threads_per_fit``). No issue set a target on it.

README.md (section "threads.py") holds the numbers measured on this machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from threadpoolctl import threadpool_limits

from bench import common
from mlplatform.lib.training.threads import threads_per_fit

BUSY_LOOP = "while True: pass"


def fit_seconds(rows: int, threads: int | None, repeat: int, iterations: int = 100) -> list[float]:
    """Seconds per fit of a seeded HistGradientBoostingClassifier at its defaults (``iterations`` boosting
    iterations; 100 is the default) on ``rows`` x 10 features."""
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier

    features, target = make_classification(n_samples=rows, n_features=10, n_informative=6, n_classes=3, random_state=0)
    seconds = []
    for _ in range(repeat):
        with threadpool_limits(limits=threads, user_api="openmp"):
            clock = time.perf_counter()
            HistGradientBoostingClassifier(max_iter=iterations, random_state=0).fit(features, target)
            seconds.append(time.perf_counter() - clock)
    return seconds


def measure(rows_list: list[int], repeat: int, loaded: bool, iterations: int, smoke: bool) -> list[dict]:
    busy = None
    if loaded:  # another process wanting a whole core: what a second step or another user's job does
        busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP], preexec_fn=lambda: os.sched_setaffinity(0, {0}))
        time.sleep(0.5)
    cells = []
    try:
        for rows in rows_list:
            # smoke: only the two sides of the ratio, the policy's count and the libraries' default
            policy = threads_per_fit(rows)
            for threads in dict.fromkeys((policy, None) if smoke else (1, 2, policy, None)):
                best, median = common.best_median(fit_seconds(rows, threads, repeat, iterations))
                cell = {
                    "rows": rows,
                    "threads": threads or "default",
                    "loaded": loaded,
                    "median": median,
                    "best": best,
                    "load_average": os.getloadavg()[0],
                }
                cells.append(cell)
                print(
                    f"{'busy loop' if loaded else 'no loop':<10}{rows:>8,} rows  threads {cell['threads']!s:<8}"
                    f"median {cell['median']:7.3f} s  best {cell['best']:7.3f} s  (load {cell['load_average']:.2f})",
                    flush=True,
                )
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    return cells


def ratios(cells: list[dict]) -> None:
    """Per size and condition: the libraries' default threads ÷ what the policy gives a search of that size."""
    for rows, loaded in dict.fromkeys((cell["rows"], cell["loaded"]) for cell in cells):
        chosen = threads_per_fit(rows)
        median = {cell["threads"]: cell["median"] for cell in cells if (cell["rows"], cell["loaded"]) == (rows, loaded)}
        common.ratio_line(
            f"default threads/policy at {rows} rows, {'busy loop' if loaded else 'no loop'}",
            median["default"] / median[chosen],
            f"medians; the policy gives {chosen} thread(s)",
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", help="training sizes (default: 1,000 to 30,000)")
    parser.add_argument("--repeat", type=int, help="fits per cell (default 5)")
    parser.add_argument("--iterations", type=int, help="boosting iterations per fit (default 100, the estimator's)")
    common.add_standard_arguments(parser, "1,000 rows, one fit of 10 iterations per cell")
    args = parser.parse_args(argv)
    rows = args.rows or ([1_000] if args.smoke else [1_000, 3_000, 10_000, 30_000])
    repeat = args.repeat or (1 if args.smoke else 5)
    # Beside a busy loop, a 1,000-row fit with two threads took 45 s at load 6: the smoke size fits less.
    iterations = args.iterations or (10 if args.smoke else 100)
    print(f"{common.machine()}; {iterations} boosting iterations per fit", flush=True)
    cells = measure(rows, repeat, False, iterations, args.smoke) + measure(rows, repeat, True, iterations, args.smoke)
    print()
    ratios(cells)
    print(f"\nall measurements: {common.save_results(args.results, 'threads', cells)}")
    return common.verdict([], smoke=args.smoke)


if __name__ == "__main__":
    raise SystemExit(main())
