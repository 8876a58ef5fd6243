"""The bento as a container image: built by ``bentoml containerize`` on the local cluster's Docker engine,
pushed to its registry, and run, answering predictions as the pipeline makes them. Without an engine the
image is refused with a message that says how to get one."""

from __future__ import annotations

import os
import subprocess
import time

import httpx
import pytest

from mlplatform.lib.serving.serving import request_rows
from mlplatform.resources import docker
from mlplatform_tests.servers import free_port
from mlplatform_tests.serving.conftest import TOKEN
from mlplatform_tests.serving.models import SavedModel


def test_without_a_docker_cli_no_image_is_built(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no docker on it

    with pytest.raises(docker.ImageError, match="no docker CLI on PATH.*local-cluster up.*MLPLATFORM_REGISTRY"):
        docker.containerize("predictor:abc", "127.0.0.1:5000", bentoml_home=tmp_path)


def test_image_references_are_named_after_the_bento() -> None:
    assert docker.image_reference("127.0.0.1:15000/", "predictor:abc123") == "127.0.0.1:15000/predictor:abc123"


@pytest.mark.slow
@pytest.mark.cluster
def test_an_engine_that_does_not_answer_is_named(cluster, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")

    with pytest.raises(docker.ImageError, match="Docker engine does not answer"):
        docker.containerize("predictor:abc", cluster["MLPLATFORM_REGISTRY"], bentoml_home=tmp_path)


@pytest.mark.slow
@pytest.mark.cluster
def test_the_bento_image_is_pushed_and_answers_like_the_pipeline(
    cluster: dict[str, str], bento_tag: str, penguins_model: SavedModel
) -> None:
    image = docker.containerize(bento_tag, cluster["MLPLATFORM_REGISTRY"], bentoml_home=os.environ["BENTOML_HOME"])

    assert image.reference == f"{cluster['MLPLATFORM_REGISTRY']}/{bento_tag}"
    assert image.digest.startswith(f"{cluster['MLPLATFORM_REGISTRY']}/predictor@sha256:")
    pulled = subprocess.run(["docker", "pull", image.digest], capture_output=True, text=True, timeout=300)
    assert pulled.returncode == 0, pulled.stderr  # the registry really holds it
    port = free_port()
    container = subprocess.run(
        ["docker", "run", "-d", "--rm", "--network", "host", "-e", f"PORT={port}", "-e", "BENTOML_HOST=127.0.0.1"]
        + ["-e", f"MLPLATFORM_API_TOKEN={TOKEN}", "-e", "MLPLATFORM_PREDICTION_LOG=/tmp/predictions", image.digest],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert container.returncode == 0, container.stderr
    name = container.stdout.strip()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, name)
        rows = request_rows(penguins_model.holdout, penguins_model.schema)
        unauthorized = httpx.post(f"{url}/predict_batch", json={"rows": rows}, timeout=30)
        answer = httpx.post(
            f"{url}/predict_batch", json={"rows": rows}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )
        assert unauthorized.status_code == 401
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_tag"] == penguins_model.tag
        expected = penguins_model.model.pipeline.predict(penguins_model.inputs).tolist()
        assert [p["prediction"] for p in answer.json()["predictions"]] == expected
        # the service's metrics, from the folder its workers share inside the container (guard.own_metrics_folder)
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        assert f'mlplatform_predictions_total{{endpoint="predict_batch",model_tag="{penguins_model.tag}"}}' in metrics
        # the connection guard is the image's HTTP protocol too (its uvicorn and httptools are pinned in the bento)
        upgrade = {"Authorization": f"Bearer {TOKEN}", "Connection": "Upgrade", "Upgrade": "h2c"}
        refused = httpx.post(f"{url}/predict_batch", json={"rows": rows}, headers=upgrade, timeout=30)
        assert refused.status_code == 400 and refused.json()["error"] == "upgrade not supported"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


def wait_ready(url: str, container: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    logs = subprocess.run(["docker", "logs", "--tail", "40", container], capture_output=True, text=True)
    raise AssertionError(f"the container did not become ready at {url}:\n{logs.stdout}{logs.stderr}")
