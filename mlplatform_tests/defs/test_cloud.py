"""MLPLATFORM_ENV=cloud: the same graph, with every artifact and every model version in S3 (moto's server over
real HTTP), each object encrypted at rest with the settings' KMS key, nothing outside the configured prefix."""

import dagster as dg
import pytest

from mlplatform.definitions import MATERIALIZE_ALL, build_definitions
from mlplatform.lib.spec import default_spec_path
from mlplatform.settings import Settings
from mlplatform_tests.conftest import BENTOML_HOME

KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/mlplatform-tests"


@pytest.mark.slow
def test_the_whole_graph_stores_its_artifacts_in_the_bucket(s3_bucket, tmp_path) -> None:
    settings = Settings.from_env(
        {
            "MLPLATFORM_ENV": "cloud",
            "MLPLATFORM_BUCKET": s3_bucket.name,
            "MLPLATFORM_PREFIX": "team-a",
            "MLPLATFORM_HOME": str(tmp_path / "home"),
            "MLPLATFORM_SPEC": str(default_spec_path()),
            "BENTOML_HOME": str(BENTOML_HOME),
            "MLPLATFORM_S3_SSE": "aws:kms",
            "MLPLATFORM_S3_KMS_KEY_ID": KMS_KEY,
        }
    )
    result = (
        build_definitions(settings)
        .resolve_job_def(MATERIALIZE_ALL)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral())
    )

    assert result.success
    listing = s3_bucket.server.client().list_objects_v2(Bucket=s3_bucket.name, Prefix="team-a/")
    keys = {item["Key"] for item in listing.get("Contents", [])}
    for asset, suffix in [
        ("raw_batch", "parquet"),
        ("accepted_data", "parquet"),
        ("cleaned_data", "parquet"),
        ("training_data", "parquet"),
        ("holdout_data", "parquet"),
        ("feature_pipeline", "joblib"),
        ("trained_model", "joblib"),
        ("evaluation_report", "joblib"),
    ]:
        assert f"team-a/assets/{asset}.{suffix}" in keys
    reports = {key for key in keys if key.startswith(f"team-a/reports/penguins/{result.run_id}/")}
    assert {key.rsplit("/", 1)[1] for key in reports} == {
        "report.md",
        "confusion_matrix.png",
        "roc_and_precision_recall.png",
        "calibration.png",
        "feature_importance.png",
    }
    # the champion pointer and its history live beside the artifacts, in the bucket
    assert {"team-a/registry/penguins/champion.json", "team-a/registry/penguins/history.jsonl"} <= set(keys)
    assert any(key.startswith("team-a/batches/accepted/") for key in keys)
    assert "team-a/batches/manifest.json" in keys and "team-a/batches/profiles/current.json" in keys
    assert not (tmp_path / "home" / "artifacts").exists()
    # the model versions are in the bucket too (exported archives and their descriptions), any pod can load them
    stored = result.asset_materializations_for_node("challenger_model")[0].metadata["tag"].value
    version = stored.split(":")[1]
    assert {f"team-a/models/penguins/{version}.tar.gz", f"team-a/models/penguins/{version}.json"} <= keys

    client = s3_bucket.server.client()
    everything = [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket.name)
        for item in page.get("Contents", [])
    ]
    assert everything and [key for key in everything if not key.startswith("team-a/")] == []
    encryption = {
        key: (head.get("ServerSideEncryption"), head.get("SSEKMSKeyId"))
        for key in everything
        for head in [client.head_object(Bucket=s3_bucket.name, Key=key)]
    }
    assert {key: sse for key, sse in encryption.items() if sse != ("aws:kms", KMS_KEY)} == {}
