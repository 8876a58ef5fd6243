"""MLPLATFORM_ENV=cloud: the same graph, with every artifact in S3 (moto's server over real HTTP)."""

import dagster as dg
import pytest

from mlplatform.definitions import MATERIALIZE_ALL, build_definitions
from mlplatform.lib.spec import default_spec_path
from mlplatform.settings import Settings
from mlplatform_tests.conftest import BENTOML_HOME


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
