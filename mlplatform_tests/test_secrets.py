"""The secret scanner the end-to-end tests rely on finds a planted value wherever it can hide: in a file, base64
encoded, in a Dagster event log's metadata, in an image layer. A scanner that found nothing would make every
"no secret leaked" assertion pass."""

from __future__ import annotations

import base64
import subprocess

import dagster as dg
import pytest

from mlplatform_tests import secrets

PLANTED = {"token": "planted-secret-7f3a9c"}


def test_a_secret_is_found_in_a_file_as_written_or_base64_encoded(tmp_path) -> None:
    (tmp_path / "clean.yaml").write_text("kind: Deployment\n")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "secret.yaml").write_text(
        f"data:\n  token: {base64.b64encode(PLANTED['token'].encode()).decode()}\n"
    )
    (tmp_path / "run.log").write_text(f"Authorization: Bearer {PLANTED['token']}\n")

    assert secrets.in_files(tmp_path, PLANTED) == [
        f"{tmp_path / 'deep' / 'er' / 'secret.yaml'}: token",
        f"{tmp_path / 'run.log'}: token",
    ]


def test_a_secret_too_short_to_search_for_is_refused() -> None:
    with pytest.raises(ValueError, match="would match by chance"):
        secrets.in_texts({"output": "abc"}, {"token": "abc"})


def test_a_secret_in_asset_metadata_is_found_in_the_event_log() -> None:
    @dg.asset
    def leaky(context) -> dg.MaterializeResult:
        context.log.info("nothing to see")
        return dg.MaterializeResult(metadata={"url": f"http://user:{PLANTED['token']}@host/"})

    @dg.asset
    def careful() -> None:
        return None

    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize([careful], instance=instance).success
        assert secrets.in_event_log(instance, PLANTED) == []
        run = dg.materialize([leaky], instance=instance)
        found = secrets.in_event_log(instance, PLANTED)

    assert found and all(line.startswith(f"run {run.run_id}, event ") for line in found)
    assert any("ASSET_MATERIALIZATION" in line for line in found)


@pytest.mark.slow
@pytest.mark.cluster
def test_a_secret_in_an_image_layer_is_found(cluster: dict[str, str], tmp_path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim\nRUN echo hello > /etc/clean\nCOPY leak /opt/leak\n")
    (tmp_path / "leak").write_text(f"TOKEN={PLANTED['token']}\n")
    reference = f"{cluster['MLPLATFORM_REGISTRY']}/secret-scan-test:1"
    build = ["docker", "build", "--network=host", "-t", reference, str(tmp_path)]
    subprocess.run(build, check=True, capture_output=True)
    try:
        found = secrets.in_image(reference, PLANTED)
        assert secrets.in_image(reference, {"other": "never-written-anywhere"}) == []
    finally:
        subprocess.run(["docker", "rmi", reference], capture_output=True)

    assert len(found) == 1 and found[0].endswith("opt/leak: token"), found
