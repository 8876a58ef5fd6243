"""Great Expectations' import (seconds) moved off a run's critical path."""

import dagster as dg

from mlplatform.lib import quality

# Executors that run every step in the run's own process; the others start a process per step, where an
# import begun by one step is lost when it ends.
SHARED_PROCESS_EXECUTORS = {"in_process", "execute_in_process_executor"}


def prepare_checks(context: dg.AssetExecutionContext) -> None:
    """Start importing GX on another thread when a check of this asset will run later in this process, so the
    import overlaps the asset's own work (reading a file spends most of its time outside Python's lock)."""
    selected = context.run.asset_check_selection  # None: every check of the job
    checked = selected is None or any(check.asset_key == context.asset_key for check in selected)
    if checked and context.job_def.executor_def.name in SHARED_PROCESS_EXECUTORS:
        quality.prepare_in_background()
