"""This machine's cores as the run's steps share them."""

from __future__ import annotations

import dagster as dg

from mlplatform.lib import candidates


class Compute(dg.ConfigurableResource):
    """``parallel_steps``: the executor runs steps side by side on this machine (the multiprocess executor),
    so each caps its threads to its share of the cores; otherwise a step may use them all."""

    parallel_steps: bool = False

    def threads(self, concurrent_steps: int) -> int | None:
        return candidates.threads_per_step(concurrent_steps) if self.parallel_steps else None
