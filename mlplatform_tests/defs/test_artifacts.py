"""The IO manager's per-run step outputs (inside graph-backed assets) do not pile up run after run."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from mlplatform.resources import ArtifactIOManager


@dg.op
def numbers() -> list[int]:
    return list(range(1000))


@dg.op
def total(values: list[int]) -> int:
    return sum(values)


@dg.graph_asset
def summed() -> int:
    return total(numbers())


def test_only_the_last_finished_runs_keep_their_step_outputs(tmp_path: Path) -> None:
    manager = ArtifactIOManager(root=str(tmp_path), keep_runs=1)
    instance = dg.DagsterInstance.ephemeral()

    runs = [dg.materialize([summed], resources={"io_manager": manager}, instance=instance) for _ in range(3)]

    assert all(run.success for run in runs)
    assert runs[-1].output_for_node("summed") == sum(range(1000))
    kept = {folder.name for folder in (tmp_path / "steps").iterdir()}
    # the third run pruned while it ran: the newest finished run is kept with it, the first is gone
    assert kept == {runs[1].run_id, runs[2].run_id}
    assert (tmp_path / "steps" / runs[2].run_id / "summed.numbers" / "result.joblib").is_file()


def test_folders_of_runs_this_instance_does_not_know_are_left_alone(tmp_path: Path) -> None:
    foreign = tmp_path / "steps" / "run-of-another-instance"
    foreign.mkdir(parents=True)
    (foreign / "value.joblib").write_bytes(b"kept")
    manager = ArtifactIOManager(root=str(tmp_path), keep_runs=1)
    instance = dg.DagsterInstance.ephemeral()

    for _ in range(3):
        assert dg.materialize([summed], resources={"io_manager": manager}, instance=instance).success

    assert (foreign / "value.joblib").read_bytes() == b"kept"
