"""Shared fixtures. Every test writes under pytest's tmp_path, never the working directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlplatform.lib.spec import ProjectSpec, default_spec_path, load_spec
from mlplatform.settings import Settings

EXAMPLE_CSV = default_spec_path().parent / "penguins.csv"


@pytest.fixture
def penguins() -> pd.DataFrame:
    return pd.read_csv(EXAMPLE_CSV)


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """Write a spec file into tmp_path; keyword arguments replace top-level sections of a valid spec."""

    def write(name: str = "spec.yaml", **sections: object) -> Path:
        document = {
            "name": "penguins",
            "problem": {"task": "classification", "target": "species", "drop_columns": ["year"]},
            "source": {"uri": str(EXAMPLE_CSV)},
        }
        document.update(sections)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(document))
        return path

    return write


@pytest.fixture
def spec_from(write_spec) -> Callable[..., ProjectSpec]:
    def make(**sections: object) -> ProjectSpec:
        return load_spec(write_spec(**sections))

    return make


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"MLPLATFORM_HOME": str(tmp_path / "home"), "MLPLATFORM_SPEC": str(default_spec_path())})
