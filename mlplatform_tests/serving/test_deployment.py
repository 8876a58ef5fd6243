"""The local deployment target: ``bentoml serve`` of a bento as a process that outlives its caller, replaced
in place, and never left without a server when the replacement is bad."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import httpx
import psutil
import pytest

from mlplatform.lib.serving.serving import request_rows
from mlplatform.resources.bentos import BentoError
from mlplatform.resources.local_server import LocalDeployment
from mlplatform_tests.servers import free_port
from mlplatform_tests.serving.models import SavedModel

pytestmark = pytest.mark.slow


@pytest.fixture
def deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MLPLATFORM_API_TOKEN", raising=False)
    target = LocalDeployment(
        tmp_path / "deployment",
        port=free_port(),
        bentoml_home=Path(os.environ["BENTOML_HOME"]),
        prediction_log=tmp_path / "predictions",
    )
    yield target
    target.stop()


def predict(deployment: LocalDeployment, row: dict, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{deployment.url}/predict", json=row, headers=headers, timeout=30)


def test_a_deployed_bento_answers_with_its_token_and_outlives_nothing_after_stop(
    deployment: LocalDeployment, bento_tag: str, penguins_model: SavedModel
) -> None:
    row = request_rows(penguins_model.holdout.head(1), penguins_model.schema)[0]

    running = deployment.deploy(bento_tag, penguins_model.tag)

    token_file = deployment.folder / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert predict(deployment, row, None).status_code == 401
    answer = predict(deployment, row, token_file.read_text())
    assert answer.status_code == 200 and answer.json()["model_tag"] == penguins_model.tag
    assert deployment.current() == running  # read back from server.json, as a later run does
    workers = psutil.Process(running.pid).children(recursive=True)

    assert deployment.stop() == running
    assert deployment.current() is None
    assert not psutil.pid_exists(running.pid) and not any(worker.is_running() for worker in workers)
    with pytest.raises(httpx.ConnectError):
        predict(deployment, row, token_file.read_text())


def test_a_bento_that_does_not_start_leaves_the_previous_one_serving(
    deployment: LocalDeployment, bento_tag: str, penguins_model: SavedModel
) -> None:
    row = request_rows(penguins_model.holdout.head(1), penguins_model.schema)[0]
    first = deployment.deploy(bento_tag, penguins_model.tag)

    with pytest.raises(BentoError, match=rf"(?s)predictor:no-such-bento.*{bento_tag}.*serves again"):
        deployment.deploy("predictor:no-such-bento", "penguins:no-such-model", timeout=60)

    now = deployment.current()
    assert now is not None and now.bento == bento_tag and now.pid != first.pid
    assert predict(deployment, row, deployment.token()).json()["model_tag"] == penguins_model.tag


def test_a_bento_that_fails_its_check_is_stopped_and_the_previous_one_restored(
    deployment: LocalDeployment, bento_tag: str, penguins_model: SavedModel
) -> None:
    deployment.deploy(bento_tag, penguins_model.tag)
    checked: list[str] = []

    def wrong_answers(url: str, token: str) -> None:
        checked.append(url)
        raise BentoError(f"{url} answered wrongly")

    with pytest.raises(BentoError, match="answered wrongly"):
        deployment.deploy(bento_tag, penguins_model.tag, check=wrong_answers)

    assert checked == [deployment.url]  # it ran against the new server, which was then stopped
    row = request_rows(penguins_model.holdout.head(1), penguins_model.schema)[0]
    assert predict(deployment, row, deployment.token()).status_code == 200


def test_a_given_token_is_used_and_not_written(tmp_path: Path) -> None:
    deployment = LocalDeployment(
        tmp_path / "deployment",
        port=free_port(),
        bentoml_home=tmp_path / "bentoml",
        prediction_log=tmp_path / "predictions",
        api_token="from-a-secret",
    )

    assert deployment.token() == "from-a-secret"
    assert deployment.token_path is None and not (deployment.folder / "token").exists()


def test_a_server_whose_folder_was_deleted_is_found_from_its_port_and_stopped(
    deployment: LocalDeployment, bento_tag: str
) -> None:
    running = deployment.deploy(bento_tag, "served-penguins:any")
    workers = psutil.Process(running.pid).children(recursive=True)
    shutil.rmtree(deployment.folder)  # server.json, token and logs gone, the server still running

    found = deployment.current()
    assert found is not None and (found.pid, found.bento, found.url) == (running.pid, bento_tag, running.url)

    assert deployment.stop() == found
    assert not psutil.pid_exists(running.pid) and not any(worker.is_running() for worker in workers)
    assert deployment.current() is None
