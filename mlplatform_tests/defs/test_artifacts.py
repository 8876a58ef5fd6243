"""The IO manager: per-run step outputs (inside graph-backed assets) do not pile up run after run, in a folder or a
bucket (moto's S3 server, through dagster-aws's S3Resource), where every value is written encrypted."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

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


@pytest.mark.slow
def test_in_a_bucket_values_go_through_the_s3_resource_encrypted_and_old_runs_are_pruned(s3_bucket) -> None:
    key = "arn:aws:kms:us-east-1:123456789012:key/io-manager"
    encryption = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key}
    manager = ArtifactIOManager(root=s3_bucket.uri("io"), keep_runs=1, encryption=encryption)
    instance = dg.DagsterInstance.ephemeral()
    client = s3_bucket.server.client()
    client.put_object(Bucket=s3_bucket.name, Key="io/steps/run-of-another-instance/value.joblib", Body=b"kept")

    runs = [dg.materialize([summed], resources={"io_manager": manager}, instance=instance) for _ in range(3)]

    assert all(run.success for run in runs)
    assert runs[-1].output_for_node("summed") == sum(range(1000))
    keys = {item["Key"] for item in client.list_objects_v2(Bucket=s3_bucket.name)["Contents"]}
    assert keys == {
        "io/assets/summed.joblib",
        "io/steps/run-of-another-instance/value.joblib",
        f"io/steps/{runs[1].run_id}/summed.numbers/result.joblib",
        f"io/steps/{runs[2].run_id}/summed.numbers/result.joblib",
    }
    written = keys - {"io/steps/run-of-another-instance/value.joblib"}
    for name in written:
        head = client.head_object(Bucket=s3_bucket.name, Key=name)
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key), name


@pytest.mark.slow
def test_a_value_missing_from_the_bucket_is_named(s3_bucket) -> None:
    manager = ArtifactIOManager(root=s3_bucket.uri("io"))
    context = dg.build_input_context(asset_key=dg.AssetKey("summed"))

    with pytest.raises(FileNotFoundError, match=rf"summed has not been materialized under {s3_bucket.uri('io')}"):
        manager.load_input(context)
