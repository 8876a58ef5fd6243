"""This machine's cores as the run's steps share them."""

from __future__ import annotations

import dagster as dg

from mlplatform.lib.training import threads


class Compute(dg.ConfigurableResource):
    """``parallel_steps``: the executor runs steps side by side on this machine (the multiprocess executor),
    so each search gets its share of the cores; otherwise one search runs at a time and may use them all.
    Either way small data gets one thread per fit (``threads.threads_per_fit``)."""

    parallel_steps: bool = False

    def threads(self, concurrent_steps: int, training_rows: int) -> int:
        return threads.threads_per_fit(training_rows, concurrent_steps if self.parallel_steps else 1)
