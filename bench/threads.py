"""One histogram gradient boosting fit with 1, 2 or the default number of OpenMP threads, on an idle machine and
beside a busy loop on one core: the measurement behind ``mlplatform.lib.threads`` (threads by training size).

    .venv/bin/python bench/threads.py                       # 1,000 to 30,000 rows, 5 fits per cell (~2 min)
    .venv/bin/python bench/threads.py --rows 3000 --repeat 3

README.md (section "threads.py") holds the numbers measured on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

RESULTS = Path(__file__).resolve().parent / "results"
BUSY_LOOP = "while True: pass"


def fit_seconds(rows: int, threads: int | None, repeat: int) -> list[float]:
    """Seconds per fit of a seeded HistGradientBoostingClassifier at its defaults on ``rows`` x 10 features."""
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier

    features, target = make_classification(n_samples=rows, n_features=10, n_informative=6, n_classes=3, random_state=0)
    seconds = []
    for _ in range(repeat):
        with threadpool_limits(limits=threads, user_api="openmp"):
            clock = time.perf_counter()
            HistGradientBoostingClassifier(random_state=0).fit(features, target)
            seconds.append(time.perf_counter() - clock)
    return seconds


def measure(rows_list: list[int], repeat: int, loaded: bool) -> list[dict]:
    busy = None
    if loaded:  # another process wanting a whole core: what a second step or another user's job does
        busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP], preexec_fn=lambda: os.sched_setaffinity(0, {0}))
        time.sleep(0.5)
    cells = []
    try:
        for rows in rows_list:
            for threads in (1, 2, None):
                seconds = fit_seconds(rows, threads, repeat)
                cell = {
                    "rows": rows,
                    "threads": threads or "default",
                    "loaded": loaded,
                    "median": statistics.median(seconds),
                    "best": min(seconds),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000, 3_000, 10_000, 30_000])
    parser.add_argument("--repeat", type=int, default=5, help="fits per cell")
    args = parser.parse_args(argv)
    print(f"{len(os.sched_getaffinity(0))} usable cores; 1-min load average {os.getloadavg()[0]:.2f}", flush=True)
    cells = measure(args.rows, args.repeat, loaded=False) + measure(args.rows, args.repeat, loaded=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    saved = RESULTS / f"threads-{time.strftime('%Y%m%d-%H%M%S')}.json"
    saved.write_text(json.dumps(cells))
    print(f"\nall measurements: {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
