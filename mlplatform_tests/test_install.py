"""The installed dagster family must move in lockstep: unpinned, resolvers pick 0.11.x integrations that
install fine and then cannot be imported."""

import importlib
from importlib.metadata import version

import pytest

CORE = ("dagster", "dagster-webserver")
INTEGRATIONS = ("dagster-aws", "dagster-k8s", "dagster-postgres")


# dagster-postgres is used for real: test_postgres_instance.py runs the production instance on PostgreSQL.
@pytest.mark.parametrize("module", ["dagster", "dagster_webserver", "dagster_aws.s3", "dagster_k8s"])
def test_dagster_family_imports(module: str) -> None:
    importlib.import_module(module)


def test_integrations_match_the_core_release() -> None:
    core = {version(name) for name in CORE}
    assert len(core) == 1, f"dagster and dagster-webserver differ: {core}"
    major, minor, patch = next(iter(core)).split(".")[:3]
    # Integrations are versioned 0.(core minor + 16).(core patch): dagster 1.13.27 <-> dagster-aws 0.29.27.
    expected = f"0.{int(minor) + 16}.{patch}"
    assert major == "1"
    for name in INTEGRATIONS:
        assert version(name) == expected, f"{name} {version(name)} does not match dagster {major}.{minor}.{patch}"


@pytest.mark.parametrize("module", ["pandas", "sklearn", "great_expectations", "bentoml", "pyarrow", "s3fs"])
def test_ml_stack_imports(module: str) -> None:
    importlib.import_module(module)
