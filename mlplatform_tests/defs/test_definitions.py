"""The code location loads, quickly, and holds the expected graph."""

import json

import dagster as dg
import pytest

from mlplatform.definitions import (
    MATERIALIZE_ALL,
    PROMOTE_MODEL,
    REPRODUCE_MODEL,
    TRAIN_AND_EVALUATE,
    build_definitions,
)
from mlplatform.defs.automation.monitor import MONITOR_JOB
from mlplatform.settings import Settings

LINEAGE = {
    "raw_batch": set(),
    "accepted_data": {"raw_batch"},
    "data_profile": {"accepted_data"},
    "cleaned_data": {"accepted_data"},
    "training_data": {"cleaned_data"},
    "holdout_data": {"cleaned_data"},
    "feature_pipeline": {"training_data"},
    "candidate_models": {"feature_pipeline", "training_data"},
    "trained_model": {"candidate_models", "feature_pipeline", "training_data"},
    "evaluation_report": {"trained_model", "candidate_models", "feature_pipeline", "training_data", "holdout_data"},
    "challenger_model": {"trained_model", "evaluation_report", "training_data"},
    "champion_model": {"challenger_model", "holdout_data"},
    "prediction_drift": {"champion_model"},
    "live_performance": {"champion_model"},
}
GROUPS = {
    "raw_batch": "data",
    "accepted_data": "data",
    "data_profile": "quality",
    "cleaned_data": "data",
    "training_data": "features",
    "holdout_data": "features",
    "feature_pipeline": "features",
    "candidate_models": "training",
    "trained_model": "training",
    "evaluation_report": "evaluation",
    "challenger_model": "registry",
    "champion_model": "registry",
    "prediction_drift": "monitoring",
    "live_performance": "monitoring",
}
MONITORING = {key for key, group in GROUPS.items() if group == "monitoring"}


@pytest.fixture
def graph(settings: Settings) -> dg.Definitions:
    return build_definitions(settings)


def test_the_shipped_module_loads() -> None:
    from mlplatform.definitions import defs

    dg.Definitions.validate_loadable(defs())


def test_lineage(graph: dg.Definitions) -> None:
    specs = {spec.key.to_user_string(): spec for spec in graph.resolve_all_asset_specs()}
    assert set(specs) == set(LINEAGE)
    for key, parents in LINEAGE.items():
        assert {dep.asset_key.to_user_string() for dep in specs[key].deps} == parents, key


def test_groups_kinds_and_descriptions(graph: dg.Definitions) -> None:
    for spec in graph.resolve_all_asset_specs():
        key = spec.key.to_user_string()
        assert spec.group_name == GROUPS[key]
        assert spec.kinds, f"{key} has no kinds"
        assert spec.description and "\n" not in spec.description.strip(), f"{key} needs a one-line description"


def test_materialize_all_job_covers_every_asset_but_monitoring_which_has_its_own(graph: dg.Definitions) -> None:
    job = graph.resolve_job_def(MATERIALIZE_ALL)
    assert {key.to_user_string() for key in job.asset_layer.selected_asset_keys} == set(LINEAGE) - MONITORING
    monitor = graph.resolve_job_def(MONITOR_JOB)
    assert {key.to_user_string() for key in monitor.asset_layer.selected_asset_keys} == MONITORING
    assert "prediction_drift_inputs_have_not_drifted" in monitor.graph.node_dict
    train = graph.resolve_job_def(TRAIN_AND_EVALUATE)
    assert not MONITORING & {key.to_user_string() for key in train.asset_layer.selected_asset_keys}


def test_quality_gates_are_blocking_checks_and_monitors_only_warn(graph: dg.Definitions) -> None:
    # checks of their own, and checks an asset declares with its materialization (live_performance's)
    definitions = [*(graph.asset_checks or []), *(graph.assets or [])]
    checks = {
        (spec.asset_key.to_user_string(), spec.name, spec.blocking)
        for definition in definitions
        for spec in definition.check_specs
    }
    assert checks == {
        ("raw_batch", "raw_batch_is_valid", True),
        ("feature_pipeline", "features_are_valid", True),
        ("challenger_model", "challenger_beats_champion", True),
        ("prediction_drift", "inputs_have_not_drifted", False),
        ("live_performance", "performance_has_not_decayed", False),
        ("live_performance", "label_files_are_readable", False),
    }


def test_the_registry_jobs_select_what_they_change(graph: dg.Definitions) -> None:
    promote = graph.resolve_job_def(PROMOTE_MODEL)
    assert {key.to_user_string() for key in promote.asset_layer.selected_asset_keys} == {"champion_model"}
    reproduce = graph.resolve_job_def(REPRODUCE_MODEL)
    selected = {key.to_user_string() for key in reproduce.asset_layer.selected_asset_keys}
    assert "cleaned_data" in selected and "challenger_model" in selected
    assert not {"raw_batch", "accepted_data", "data_profile", "champion_model"} & selected  # never promotes
    steps = set(reproduce.graph.node_dict)
    assert "feature_pipeline_features_are_valid" in steps and "challenger_model_challenger_beats_champion" not in steps


def test_training_never_waits_on_the_monitors(graph: dg.Definitions) -> None:
    """A labels store that cannot be read must not fail a training run: monitoring runs on its own."""
    train = graph.resolve_job_def(TRAIN_AND_EVALUATE)
    selected = {key.to_user_string() for key in train.asset_layer.selected_asset_keys}

    assert "champion_model" in selected and "live_performance" not in selected


@pytest.mark.parametrize("heavy", ["great_expectations", "bentoml", "optuna"])
def test_the_code_location_does_not_import_what_only_steps_need(heavy: str) -> None:
    import subprocess
    import sys

    probe = f"import sys, mlplatform.definitions; print({heavy!r} in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_broken_spec_fails_loading_loudly_naming_the_field(tmp_path) -> None:
    """The spec shapes the graph (its freshness policies), so the code location reads it: a broken one is an
    error the UI shows, with the file and field, not a graph that silently ignores it."""
    from mlplatform.lib.spec import SpecError

    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nproblem: {task: nonsense, target: y}\nsource: {uri: x.csv}\n")
    settings = Settings.from_env({"MLPLATFORM_HOME": str(tmp_path), "MLPLATFORM_SPEC": str(broken)})
    with pytest.raises(SpecError, match=r"broken.yaml: invalid spec\n  problem.task: "):
        build_definitions(settings)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MLPLATFORM_ENV": "staging"}, "MLPLATFORM_ENV='staging'"),
        ({"MLPLATFORM_ENV": "cloud"}, "MLPLATFORM_BUCKET"),
        ({"MLPLATFORM_EXECUTOR": "threads"}, "MLPLATFORM_EXECUTOR='threads'"),
        ({"MLPLATFORM_S3_SSE": "aws:fsx"}, "MLPLATFORM_S3_SSE='aws:fsx': use 'AES256' or 'aws:kms'"),
        ({"MLPLATFORM_S3_KMS_KEY_ID": "key-1"}, "MLPLATFORM_S3_KMS_KEY_ID is set but MLPLATFORM_S3_SSE='AES256'"),
        (
            {"MLPLATFORM_DAGSTER_CONFIG": "no/such/dagster.yaml"},
            "MLPLATFORM_DAGSTER_CONFIG='no/such/dagster.yaml': no such",
        ),
    ],
)
def test_bad_settings_are_named(environ: dict, message: str) -> None:
    from mlplatform.settings import SettingsError

    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)


def test_cloud_settings_point_artifacts_at_the_bucket() -> None:
    settings = Settings.from_env(
        {"MLPLATFORM_ENV": "cloud", "MLPLATFORM_BUCKET": "models", "MLPLATFORM_PREFIX": "team/"}
    )
    assert settings.artifact_root == "s3://models/team"
    assert settings.model_store_root == "s3://models/team/models"
    assert Settings.from_env({}).model_store_root is None  # locally BentoML's home is the store


def kms_cloud_settings(environ: dict[str, str] | None = None) -> Settings:
    """Cloud settings on the bucket ``models`` with KMS encryption (key-1), and ``environ`` besides."""
    cloud = {
        "MLPLATFORM_ENV": "cloud",
        "MLPLATFORM_BUCKET": "models",
        "MLPLATFORM_HOME": "/tmp/unused",
        "MLPLATFORM_S3_SSE": "aws:kms",
        "MLPLATFORM_S3_KMS_KEY_ID": "key-1",
    }
    return Settings.from_env({**cloud, **(environ or {})})


def test_cloud_resources_keep_models_in_the_bucket_and_encrypt_every_write(monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec.config

    from mlplatform.definitions import build_resources
    from mlplatform.resources.model_store import BentoMLStore, ExportedModelStore

    monkeypatch.delitem(fsspec.config.conf, "s3", raising=False)  # restored after the test
    settings = kms_cloud_settings()

    store = build_resources(settings)["registry"].for_project("penguins").store

    assert isinstance(store, ExportedModelStore) and store.root == "s3://models/mlplatform/models"
    assert isinstance(store.cache, BentoMLStore) and store.cache.bentoml_home == settings.bentoml_home
    assert fsspec.config.conf["s3"]["s3_additional_kwargs"] == {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "key-1",
    }


def test_the_api_token_reaches_the_deployment_as_an_env_var_never_as_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resource config shows in the UI: the token travels as an EnvVar that Dagster resolves at run time."""
    from mlplatform.definitions import build_resources

    monkeypatch.setenv("MLPLATFORM_API_TOKEN", "s3cret-value")
    settings = Settings.from_env(
        {"MLPLATFORM_HOME": "/tmp/unused", "MLPLATFORM_DEPLOY": "local", "MLPLATFORM_API_TOKEN": "s3cret-value"}
    )
    assert "s3cret-value" not in repr(settings)

    serving = build_resources(settings)["local_serving"]

    assert isinstance(serving.api_token, dg.EnvVar) and serving.api_token.env_var_name == "MLPLATFORM_API_TOKEN"
    assert serving.process_config_and_initialize().deployment().token() == "s3cret-value"


def test_on_kubernetes_each_candidate_search_is_a_pod_of_the_spec_size(write_spec, tmp_path) -> None:
    """MLPLATFORM_EXECUTOR=k8s gives the jobs dagster-k8s's step-per-Job executor, and every candidate step the
    pod resources of the spec's training.resources (what k8s_job_executor reads from the step's tags)."""
    from dagster._core.execution.api import create_execution_plan

    candidates = {name: {"estimator": name, "trials": 1} for name in ("logistic_regression", "random_forest")}
    spec = write_spec(training={"candidates": candidates, "resources": {"cpu": "1500m", "memory": "2Gi"}})
    environ = {"MLPLATFORM_HOME": str(tmp_path), "MLPLATFORM_SPEC": str(spec), "MLPLATFORM_EXECUTOR": "k8s"}

    job = build_definitions(Settings.from_env(environ)).resolve_job_def(MATERIALIZE_ALL)
    tags = {step.key: step.tags for step in create_execution_plan(job).steps}

    assert job.executor_def.name == "k8s"
    [tuning] = [key for key in tags if key.startswith("candidate_models.tune_candidate")]
    pod = json.loads(tags[tuning]["dagster-k8s/config"])
    wanted = {"cpu": "1500m", "memory": "2Gi"}
    assert pod == {"container_config": {"resources": {"requests": wanted, "limits": wanted}}}
    assert not [key for key, step_tags in tags.items() if key != tuning and "dagster-k8s/config" in step_tags]


def test_without_training_resources_the_cluster_sizes_the_pods(write_spec, tmp_path) -> None:
    from dagster._core.execution.api import create_execution_plan

    environ = {"MLPLATFORM_HOME": str(tmp_path), "MLPLATFORM_SPEC": str(write_spec()), "MLPLATFORM_EXECUTOR": "k8s"}

    job = build_definitions(Settings.from_env(environ)).resolve_job_def(MATERIALIZE_ALL)

    steps = create_execution_plan(job).steps
    assert any(step.key.startswith("candidate_models.tune_candidate") for step in steps)
    assert not [step.key for step in steps if "dagster-k8s/config" in step.tags]


def test_the_s3_clients_take_endpoint_region_and_encryption_from_the_settings_and_no_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fsspec.config

    from mlplatform.definitions import build_resources

    monkeypatch.delitem(fsspec.config.conf, "s3", raising=False)  # build_resources configures s3fs for the process
    settings = kms_cloud_settings(
        {
            "AWS_ENDPOINT_URL": "http://every-service:9000",
            "AWS_ENDPOINT_URL_S3": "http://s3-only:9000",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY",
            "AWS_SECRET_ACCESS_KEY": "secret-access-value",
        }
    )

    resources = build_resources(settings)

    io_manager, s3 = resources["io_manager"], resources["s3"]
    assert (io_manager.endpoint_url, io_manager.region_name) == ("http://s3-only:9000", "eu-west-1")
    assert io_manager.encryption == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "key-1"}
    assert (s3.endpoint_url, s3.region_name) == ("http://s3-only:9000", "eu-west-1")
    assert (s3.aws_access_key_id, s3.aws_secret_access_key, s3.aws_session_token) == (None, None, None)
    shown = repr(resources)  # resource config shows in the UI
    assert "AKIAEXAMPLEKEY" not in shown and "secret-access-value" not in shown
