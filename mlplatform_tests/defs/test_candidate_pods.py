"""A candidate's search in a pod of its own (``resources.pod``), launched by its step through Dagster Pipes
(``PipesK8sClient``): on the local cluster, with the platform's image built from this checkout, moto's S3 server
on the address pods reach the host at, and the S3 credentials in a Kubernetes Secret of the test's namespace."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import kubernetes
import pytest
import yaml

from mlplatform.definitions import build_definitions, run_config
from mlplatform.lib.spec import load_spec
from mlplatform.lib.training import candidates
from mlplatform.resources.pods import PodError
from mlplatform.settings import Settings
from mlplatform_tests.conftest import BENTOML_HOME, EXAMPLE_CSV, use_s3_server
from mlplatform_tests.servers import FAKE_CREDENTIALS, S3Bucket, S3Server, running_moto_server
from mlplatform_tests.user_code_image import build_and_push

KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/mlplatform-pods"
SEARCH = [dg.AssetKey(name) for name in ("raw_batch", "accepted_data", "cleaned_data", "training_data")]
SEARCH += [dg.AssetKey(name) for name in ("holdout_data", "feature_pipeline", "candidate_models")]


def spec_with_a_pod(folder: Path, pod: dict, **candidate: object) -> Path:
    """Penguins with two candidates: one searched in the step's process, one in a pod of its own."""
    path = folder / "spec.yaml"
    document = {
        "name": "penguins",
        "problem": {"task": "classification", "target": "species", "drop_columns": ["year"]},
        "source": {"uri": str(EXAMPLE_CSV)},
        "training": {
            "candidates": {
                "linear": {"estimator": "logistic_regression", "trials": 2},
                "forest": {"estimator": "random_forest", "trials": 2, "resources": {"pod": pod}, **candidate},
            }
        },
    }
    path.write_text(yaml.safe_dump(document))
    return path


def run_search(settings: Settings, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = build_definitions(settings).resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=instance, asset_selection=SEARCH, run_config=run_config(settings.spec_path), raise_on_error=False
    )


def test_a_pod_needs_an_artifact_store_pods_can_reach(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "MLPLATFORM_HOME": str(tmp_path / "home"),
            "MLPLATFORM_SPEC": str(spec_with_a_pod(tmp_path, {"cpu": "500m"})),
            "MLPLATFORM_DEPLOY": "none",
            "BENTOML_HOME": str(BENTOML_HOME),
        }
    )

    result = run_search(settings, dg.DagsterInstance.ephemeral())

    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    assert failure.step_key == "candidate_models.tune_candidate[forest]"
    error = failure.step_failure_data.error.cause
    assert error.cls_name == PodError.__name__
    assert "training.candidates.forest.resources.pod" in error.message
    assert "out of a pod's reach: use MLPLATFORM_ENV=cloud" in error.message
    assert not list((tmp_path / "home" / "artifacts" / "steps").rglob("inputs.joblib"))  # nothing half-left


@pytest.fixture(scope="module")
def cluster(cluster_environment: dict[str, str]) -> Iterator[dict[str, str]]:
    """The session's cluster, its environment set for this module (the step's PipesK8sClient reads it)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in cluster_environment.items():
            patch.setenv(name, value)
        yield cluster_environment


@pytest.fixture(scope="module")
def namespace(cluster: dict[str, str]) -> Iterator[str]:
    """A namespace of the test's own, holding the Secret the pod's S3 credentials come from; deleted afterwards."""
    kubernetes.config.load_kube_config(config_file=cluster["KUBECONFIG"])
    core = kubernetes.client.CoreV1Api()
    name = f"mlp-pipes-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    try:
        credentials = {key: FAKE_CREDENTIALS[key] for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        core.create_namespaced_secret(name, {"metadata": {"name": "s3-credentials"}, "stringData": credentials})
        deadline = time.monotonic() + 60  # the API server refuses pods until the default ServiceAccount has its token
        while not default_token(core, name):
            assert time.monotonic() < deadline, f"namespace {name}: the default ServiceAccount got no token in 60 s"
            time.sleep(0.5)
        yield name
    finally:
        core.delete_namespace(name)


def default_token(core: kubernetes.client.CoreV1Api, namespace: str) -> bool:
    try:
        return bool(core.read_namespaced_service_account("default", namespace).secrets)
    except kubernetes.client.ApiException as error:
        if error.status == 404:  # the controller has not created it yet
            return False
        raise


@pytest.fixture(scope="module")
def pod_image(cluster: dict[str, str]) -> str:
    return build_and_push(cluster["MLPLATFORM_REGISTRY"], dict(os.environ)).reference


@pytest.fixture(scope="module")
def pods_s3(cluster: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server where the pods reach the host (and this process too)."""
    with running_moto_server(tmp_path_factory.mktemp("moto"), host=cluster["MLPLATFORM_HOST_FROM_PODS"]) as server:
        yield server


@pytest.fixture
def cloud(pods_s3: S3Server, pod_image: str, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Cloud settings for a spec, on a new bucket of ``pods_s3``, the pods in the test's namespace."""
    use_s3_server(pods_s3, tmp_path, monkeypatch)
    bucket = S3Bucket.create(pods_s3)

    def settings_for(pod: dict, **candidate: object) -> Settings:
        return Settings.from_env(
            {
                **os.environ,
                "MLPLATFORM_ENV": "cloud",
                "MLPLATFORM_BUCKET": bucket.name,
                "MLPLATFORM_PREFIX": "team-p",
                "MLPLATFORM_HOME": str(tmp_path / "home"),
                "MLPLATFORM_SPEC": str(spec_with_a_pod(tmp_path, pod, **candidate)),
                "BENTOML_HOME": str(BENTOML_HOME),
                "MLPLATFORM_S3_SSE": "aws:kms",
                "MLPLATFORM_S3_KMS_KEY_ID": KMS_KEY,
                "MLPLATFORM_POD_IMAGE": pod_image,
                "MLPLATFORM_POD_NAMESPACE": namespace,
            }
        )

    return bucket, settings_for


POD = {"cpu": "500m", "memory": "1Gi", "env_from_secrets": ["s3-credentials"]}


def pods_left(namespace: str) -> list[str]:
    listed = kubernetes.client.CoreV1Api().list_namespaced_pod(namespace, label_selector="mlplatform/candidate")
    return [pod.metadata.name for pod in listed.items if pod.metadata.deletion_timestamp is None]


@pytest.mark.slow
@pytest.mark.cluster
def test_a_candidate_searches_in_its_own_pod_and_reports_through_pipes(cloud, pod_image: str, namespace: str) -> None:
    bucket, settings_for = cloud
    server = bucket.server
    settings = settings_for(POD)
    instance = dg.DagsterInstance.ephemeral()

    result = run_search(settings, instance)

    assert result.success, [e.message for e in result.all_events if e.is_failure]
    tuned = result.output_for_node("candidate_models")
    assert set(tuned) == {"linear", "forest"}
    # The pod's search is the step's search: same inputs, same seed, same trials, same result.
    training = result.asset_value("training_data")
    features = candidates.transformed(result.asset_value("feature_pipeline"), training)
    spec = load_spec(settings.spec_path)
    forest = spec.training.candidates["forest"]
    here = candidates.tune("forest", forest, features, training["species"], spec, threads=1)
    assert (tuned["forest"].cv_score, tuned["forest"].best_params) == (here.cv_score, here.best_params)
    assert tuned["forest"].trials == 2 and tuned["forest"].threads >= 1

    # Its logs came back through Pipes into the step's events, and its model is in the artifact store,
    # written by the pod with the settings' encryption; its inputs were removed.
    messages = [record.user_message for record in instance.all_logs(result.run_id)]
    assert any(message.startswith("forest: searching in pod, inputs s3://") for message in messages)
    assert any("forest: cv score" in message and "model at s3://" in message for message in messages)
    model_key = f"team-p/steps/{result.run_id}/pods/forest/candidate.joblib"
    head = server.client().head_object(Bucket=bucket.name, Key=model_key)
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", KMS_KEY)
    listing = server.client().list_objects_v2(Bucket=bucket.name, Prefix=f"team-p/steps/{result.run_id}/pods/")
    assert [item["Key"] for item in listing["Contents"]] == [model_key]
    [output] = [
        event
        for event in result.all_events
        if event.is_successful_output and event.step_key == "candidate_models.tune_candidate[forest]"
    ]
    metadata = output.event_specific_data.metadata
    assert metadata["pod_image"].value == pod_image
    assert metadata["pod_model"].value == f"s3://{bucket.name}/{model_key}"
    assert pods_left(namespace) == []  # PipesK8sClient deleted the pod once it was done


@pytest.mark.slow
@pytest.mark.cluster
def test_a_search_that_fails_in_its_pod_fails_its_step_naming_the_candidate(cloud, namespace: str) -> None:
    bucket, settings_for = cloud
    settings = settings_for(POD, params={"n_estimators": -5})  # refused by scikit-learn, in the pod
    instance = dg.DagsterInstance.ephemeral()

    result = run_search(settings, instance)

    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    assert failure.step_key == "candidate_models.tune_candidate[forest]"
    error = failure.step_failure_data.error.cause
    assert error.cls_name == PodError.__name__ and error.message.startswith(
        "mlplatform.resources.pods.PodError: forest: its pod failed"
    )
    # The pod's own exception came back through Pipes, into the step's events (the UI shows it with its trace).
    [closed] = [
        record.dagster_event
        for record in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
        if record.dagster_event.message == "[pipes] external process pipes closed with exception"
    ]
    assert closed.step_key == "candidate_models.tune_candidate[forest]"
    cause = closed.event_specific_data.error
    assert cause.cls_name == "CandidateError"
    assert "candidate 'forest' (random_forest) failed to fit" in cause.message and "n_estimators" in cause.message
    listing = bucket.server.client().list_objects_v2(Bucket=bucket.name, Prefix=f"team-p/steps/{result.run_id}/pods/")
    assert listing.get("Contents", []) == []  # its inputs removed, no model
    assert pods_left(namespace) == []


# A step that itself runs in a pod (as under K8sRunLauncher and k8s_job_executor): the same search, launched from
# a pod of the platform's image with in-cluster config, under a ServiceAccount allowed only what README says.
IN_A_POD = """
import json, os, pathlib, yaml
import dagster as dg
from mlplatform.definitions import build_definitions, run_config
from mlplatform.lib.spec import default_spec_path
from mlplatform.settings import Settings
spec = {**json.loads(os.environ["SPEC"]), "source": {"uri": str(default_spec_path().parent / "penguins.csv")}}
path = pathlib.Path("/tmp/spec.yaml")
path.write_text(yaml.safe_dump(spec))
settings = Settings.from_env(home="/tmp/home", spec_path=path)
job = build_definitions(settings).resolve_implicit_global_asset_job_def()
keys = [dg.AssetKey(name) for name in json.loads(os.environ["SEARCH"])]
result = job.execute_in_process(
    instance=dg.DagsterInstance.ephemeral(), asset_selection=keys, run_config=run_config(path), raise_on_error=False
)
tuned = result.output_for_node("candidate_models") if result.success else {}
print("RESULT " + json.dumps({"success": result.success, "run_id": result.run_id, "tuned": sorted(tuned)}))
"""
LAUNCHER_RULES = [  # what README says a step in a pod needs for PipesK8sClient, and nothing more
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list", "delete"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
]


@pytest.mark.slow
@pytest.mark.cluster
def test_a_step_in_a_pod_launches_the_candidates_pod_with_in_cluster_config(
    cluster: dict[str, str], pods_s3: S3Server, pod_image: str, namespace: str, tmp_path: Path, monkeypatch
) -> None:
    use_s3_server(pods_s3, tmp_path, monkeypatch)
    bucket = S3Bucket.create(pods_s3)
    core, rbac = kubernetes.client.CoreV1Api(), kubernetes.client.RbacAuthorizationV1Api()
    account = "candidate-launcher"
    core.create_namespaced_service_account(namespace, {"metadata": {"name": account}})
    rbac.create_namespaced_role(namespace, {"metadata": {"name": account}, "rules": LAUNCHER_RULES})
    binding = {
        "metadata": {"name": account},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }
    rbac.create_namespaced_role_binding(namespace, binding)
    wait_for(lambda: core.read_namespaced_service_account(account, namespace).secrets, f"{account}'s token")
    spec = yaml.safe_load(spec_with_a_pod(tmp_path, POD).read_text())
    environment = {
        "SPEC": json.dumps({key: value for key, value in spec.items() if key != "source"}),
        "SEARCH": json.dumps([key.path[0] for key in SEARCH]),
        "MLPLATFORM_ENV": "cloud",
        "MLPLATFORM_BUCKET": bucket.name,
        "MLPLATFORM_PREFIX": "in-pod",
        "MLPLATFORM_DEPLOY": "none",
        "MLPLATFORM_S3_SSE": "aws:kms",
        "MLPLATFORM_S3_KMS_KEY_ID": KMS_KEY,
        "MLPLATFORM_POD_IMAGE": pod_image,  # K8sRunLauncher sets DAGSTER_CURRENT_IMAGE; this says it outright
        "AWS_ENDPOINT_URL_S3": pods_s3.endpoint_url,
        "AWS_DEFAULT_REGION": FAKE_CREDENTIALS["AWS_DEFAULT_REGION"],
    }
    launcher = {
        "metadata": {"name": "launcher"},
        "spec": {
            "serviceAccountName": account,
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "step",
                    "image": pod_image,
                    "command": ["python", "-c", IN_A_POD],
                    "env": [{"name": name, "value": value} for name, value in environment.items()],
                    "envFrom": [{"secretRef": {"name": "s3-credentials"}}],
                }
            ],
        },
    }
    core.create_namespaced_pod(namespace, launcher)

    def finished():
        return core.read_namespaced_pod("launcher", namespace).status.phase in ("Succeeded", "Failed")

    wait_for(finished, "the launcher pod to finish", seconds=600)
    # the raw bytes: the client's own decoding turns a non-ASCII log into the repr of its bytes
    log = core.read_namespaced_pod_log("launcher", namespace, _preload_content=False).data.decode()
    results = [line.removeprefix("RESULT ") for line in log.splitlines() if line.startswith("RESULT ")]
    assert len(results) == 1, log[-6000:]
    outcome = json.loads(results[0])
    assert outcome["success"] and outcome["tuned"] == ["forest", "linear"], log[-4000:]
    assert "forest: searching in pod, inputs s3://" in log  # the candidate pod's log, streamed to the step's
    model_key = f"in-pod/steps/{outcome['run_id']}/pods/forest/candidate.joblib"
    head = pods_s3.client().head_object(Bucket=bucket.name, Key=model_key)
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", KMS_KEY)
    assert pods_left(namespace) == []


def wait_for(condition, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds:g} s for {what}"
        time.sleep(1)
