"""bentos.build: a bento for the same model and code is reused (``mlplatform serve`` after a crash does not
rebuild), a change of code or model makes a new one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlplatform.lib.project_files import project_file
from mlplatform.resources import bentos
from mlplatform_tests.conftest import BENTOML_HOME
from mlplatform_tests.serving.models import SavedModel

pytestmark = pytest.mark.slow


def test_the_same_model_and_code_reuse_the_bento_and_a_change_builds_another(
    bento_tag: str, penguins_model: SavedModel, tmp_path: Path
) -> None:
    assert bentos.build(penguins_model.tag, bentoml_home=BENTOML_HOME) == bento_tag

    changed = tmp_path / "predictor"
    shutil.copytree(project_file("bentos", "predictor"), changed)
    with (changed / "service.py").open("a") as service:
        service.write("\n# a change of the service's code\n")
    other = bentos.build(penguins_model.tag, bentoml_home=BENTOML_HOME, service_dir=changed)

    assert other != bento_tag and other.split(":")[0] == bento_tag.split(":")[0]
    assert bentos.build(penguins_model.tag, bentoml_home=BENTOML_HOME, service_dir=changed) == other
