"""Shared fixtures. Every test writes under pytest's tmp_path, never the working directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlplatform.lib.spec import ProjectSpec, default_spec_path, load_spec
from mlplatform.settings import Settings

EXAMPLE_CSV = default_spec_path().parent / "penguins.csv"

# BentoML reads BENTOML_HOME once, at its first use, and otherwise keeps models and bentos under ~/bentoml; a
# process has one BentoML home (mlplatform.resources.model_store). Set before any test runs, this is the home of
# every in-process store of the session: a test's registry, its Settings (BENTOML_HOME in their environment) and
# the subprocesses whose store it reads use this one. A subprocess that stands for a user's own shell (the CLI
# tests, `mlplatform dev`) is started without it, so that its `--home` holds its models, as a user's does.
BENTOML_HOME = Path(tempfile.mkdtemp(prefix="mlplatform-tests-bentoml-")).resolve()
os.environ["BENTOML_HOME"] = str(BENTOML_HOME)
os.environ["BENTOML_DO_NOT_TRACK"] = "true"


@pytest.fixture(scope="session", autouse=True)
def _remove_bentoml_home():
    yield
    shutil.rmtree(BENTOML_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def _models_a_test_stores_are_deleted_after_it() -> Iterator[None]:
    """With one home for the session, what a test stores would be seen by the next (``Registry.trained_on``
    finding a model so that nothing is trained, a count of versions one too high): the models a test stored, in
    this process or in a subprocess given this home, are deleted after it. Models of session- or module-scoped
    fixtures exist before the test starts and are kept; such a fixture names a project of its own
    (serving/conftest.py), so that no test of another project sees them."""
    before = _stored_models()
    yield
    for tag in _stored_models() - before:
        import bentoml

        bentoml.models.delete(tag)


def _stored_models() -> set[str]:
    if not (BENTOML_HOME / "models").exists():  # no process has used BentoML with this home yet: no model, and
        return set()  # no need to import BentoML for a test that does not use it
    import bentoml

    return {str(model.tag) for model in bentoml.models.list()}


@pytest.fixture
def penguins() -> pd.DataFrame:
    return pd.read_csv(EXAMPLE_CSV)


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """Write a spec file into tmp_path; keyword arguments replace top-level sections of a valid spec."""

    def write(filename: str = "spec.yaml", **sections: object) -> Path:
        document = {
            "name": "penguins",
            "problem": {"task": "classification", "target": "species", "drop_columns": ["year"]},
            "source": {"uri": str(EXAMPLE_CSV)},
        }
        document.update(sections)
        if "training" not in sections and isinstance(document["problem"], dict):
            # one cheap candidate keeps graph tests fast; tests of model choice name their own
            linear = "ridge" if document["problem"].get("task") == "regression" else "logistic_regression"
            document["training"] = {"candidates": {linear: {"estimator": linear, "trials": 2}}}
        path = tmp_path / filename
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
    return Settings.from_env(
        {
            "MLPLATFORM_HOME": str(tmp_path / "home"),
            "MLPLATFORM_SPEC": str(default_spec_path()),
            "MLPLATFORM_DEPLOY": "none",
            "BENTOML_HOME": str(BENTOML_HOME),
        }
    )


# Real servers (see mlplatform_tests/servers.py), imported here because this section was appended.
from mlplatform_tests.servers import S3Bucket, S3Server, free_port, running_moto_server  # noqa: E402


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server over real HTTP on 127.0.0.1, shared by the session; tests using it are `slow`."""
    with running_moto_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Bucket]:
    """A new bucket, with the environment pointing boto3 and s3fs at the server (AWS_ENDPOINT_URL_S3)."""
    import s3fs

    use_s3_server(s3_server, tmp_path, monkeypatch)
    yield S3Bucket.create(s3_server)
    s3fs.S3FileSystem.clear_instance_cache()


def use_s3_server(server: S3Server, config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point boto3 and s3fs at ``server`` for the rest of the test (AWS_ENDPOINT_URL_S3, fake credentials)."""
    import fsspec.config
    import s3fs

    from mlplatform.resources.object_storage import s3_client

    # the encryption a test's settings configure (resources.object_storage) ends with the test
    monkeypatch.delitem(fsspec.config.conf, "s3", raising=False)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in server.environment(config_dir).items():
        monkeypatch.setenv(name, value)
    # s3fs caches filesystem instances by their arguments, not by the environment they were built in; so does the
    # IO manager its boto3 clients (by endpoint and region, None taking the environment of the first call).
    s3fs.S3FileSystem.clear_instance_cache()
    s3_client.cache_clear()


# The real Dagster UI stack (see mlplatform_tests/servers_dagster.py), started once per session for the
# slow UI tests; imported here because this section was appended.
import signal  # noqa: E402
from contextlib import ExitStack  # noqa: E402

from mlplatform.resources import LocalServing  # noqa: E402
from mlplatform_tests.servers_dagster import (  # noqa: E402
    DagsterServers,
    dagster_dev,
    launch_materialize_all,
    sigint_ignored,
    wait_for_code_location,
    wait_for_run,
)


@pytest.fixture(scope="session")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterServers]:
    """``mlplatform dev`` on a free port with its home under tmp_path, its code location loaded.

    Started the way that used to make it ignore SIGTERM (as a shell's background job, SIGINT ignored),
    and stopped with SIGTERM: leaving the session fails unless every process of the stack exited by
    itself, in time, with nothing killed and nothing left running."""
    home = tmp_path_factory.mktemp("dagster_ui") / "home"
    # Started from a checkout's folder, beside the project's dagster.yaml, as a developer starts it.
    from mlplatform.cli import instance_config

    shutil.copyfile(instance_config(), home.parent / "dagster.yaml")
    # The graph a user gets by default, the local deployment included, on a port of its own.
    environment = {
        "MLPLATFORM_SPEC": str(default_spec_path()),
        "MLPLATFORM_DEPLOY": "local",
        "MLPLATFORM_SERVE_PORT": str(free_port()),
    }
    served = LocalServing.for_settings(Settings.from_env({"MLPLATFORM_HOME": str(home), **environment})).deployment()
    with ExitStack() as stack:
        stack.callback(served.stop)  # the server outlives the runs and the UI, as it does for a user
        with sigint_ignored():
            servers = stack.enter_context(dagster_dev(home, environment=environment, stop_signal=signal.SIGTERM))
        servers.local_deployment = served
        wait_for_code_location(servers)
        yield servers


@pytest.fixture(scope="session")
def materialized_run(dagster_ui: DagsterServers) -> str:
    """The id of a successful run launched as the UI's "Materialize all" does, on the session's stack."""
    run_id = launch_materialize_all(dagster_ui, tags={"mlplatform/launched_by": "pytest"})
    wait_for_run(dagster_ui, run_id)
    return run_id


# The machine's local cluster (see mlplatform_tests/cluster.py): brought up once for the `cluster` tier and
# down at the end of the session, when the session brought it up.
from mlplatform_tests.cluster import local_cluster, local_cluster_script  # noqa: E402


@pytest.fixture(scope="session")
def cluster_environment() -> Iterator[dict[str, str]]:
    """The cluster's export lines (KUBECONFIG, DOCKER_HOST, MLPLATFORM_REGISTRY, MLPLATFORM_HOST_FROM_PODS...).
    A user points the tier at kind or EKS by setting MLPLATFORM_LOCAL_CLUSTER to a script that prints theirs."""
    if local_cluster_script() is None:  # a machine without the workplace's cluster script cannot run these
        pytest.skip("no local-cluster script here (set MLPLATFORM_LOCAL_CLUSTER): no Docker engine or Kubernetes")
    with local_cluster() as environment:
        yield environment


@pytest.fixture
def cluster(cluster_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The cluster's environment, set in this process for the test (docker, kubectl and the kubernetes client
    read it from there)."""
    for name, value in cluster_environment.items():
        monkeypatch.setenv(name, value)
    return cluster_environment
