"""Fixtures for the serving tests: a registry model version in the session's BentoML home, the service
module imported against it, and (for slow tests) its bento built and served by ``bentoml serve``."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from mlplatform.lib.project_files import project_file
from mlplatform.resources import bentos
from mlplatform_tests.conftest import BENTOML_HOME
from mlplatform_tests.servers import free_port
from mlplatform_tests.serving.models import SavedModel, save_penguins_model

TOKEN = "test-token-5f3c"


@pytest.fixture(scope="session")
def penguins_model() -> SavedModel:
    """A model version in the session's BentoML home (the root conftest's BENTOML_HOME), where both the
    registry and an in-process service find it. It outlives the test that made it, so it is a project of its own:
    the tests of project 'penguins' never count it among theirs."""
    return save_penguins_model(BENTOML_HOME, project="served-penguins")


@pytest.fixture(scope="session")
def prediction_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("predictions")


@pytest.fixture(scope="session")
def service_module(penguins_model: SavedModel, prediction_log_dir: Path) -> ModuleType:
    """bentos/predictor/service.py imported once, as a worker imports it: the module reads its settings and
    registers its Prometheus metrics at import, which a process does only once."""
    environment = {
        "MLPLATFORM_MODEL_TAG": penguins_model.tag,
        "MLPLATFORM_API_TOKEN": TOKEN,
        "MLPLATFORM_PREDICTION_LOG": str(prediction_log_dir),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        spec = importlib.util.spec_from_file_location(
            "predictor_service", project_file("bentos", "predictor", "service.py")
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def bento_tag(penguins_model: SavedModel) -> str:
    """The predictor bento built for the test model (``bentoml build --arg model_tag=...``)."""
    return bentos.build(penguins_model.tag, bentoml_home=BENTOML_HOME)


@dataclass(frozen=True)
class ServedBento:
    server: bentos.LocalServer
    prediction_log: Path

    @property
    def url(self) -> str:
        return self.server.url


def serve_bento(bento_tag: str, folder: Path, **environment: str) -> bentos.LocalServer:
    """``bentoml serve`` of a bento on a free loopback port, its log and prediction log under ``folder``."""
    return bentos.serve(
        bento_tag,
        port=free_port(),
        bentoml_home=BENTOML_HOME,
        log_path=folder / "bentoml.log",
        environment={"MLPLATFORM_PREDICTION_LOG": str(folder / "predictions"), **environment},
    )


@pytest.fixture(scope="session")
def served_bento(bento_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedBento]:
    """The bento under ``bentoml serve``, stopped with its workers at the end.

    MLPLATFORM_MODEL_TAG names a version that does not exist: the bento must serve the one it was built for."""
    folder = tmp_path_factory.mktemp("served")
    with serve_bento(
        bento_tag, folder, MLPLATFORM_API_TOKEN=TOKEN, MLPLATFORM_MODEL_TAG="penguins:not-this-one"
    ) as server:
        server.wait_ready()
        yield ServedBento(server, folder / "predictions")
