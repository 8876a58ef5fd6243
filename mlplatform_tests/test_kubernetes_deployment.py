"""The champion on a real Kubernetes cluster (the local one, or whatever KUBECONFIG, DOCKER_HOST and
MLPLATFORM_REGISTRY name): the graph builds the bento, containerizes and pushes it, and the
``kubernetes_deployment`` asset rolls it out with two replicas in a namespace of this module's, created and
deleted here. A new champion rolls out under load without a failed request; a version that never gets ready,
and one that answers for another model, are rolled back while the old one keeps answering.

Each bento's image is built once, by the graph (containerize takes minutes); the version that cannot get ready
is that image with one more layer (an environment variable the service refuses), built in a second."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from mlplatform.lib.deployment import kubernetes as manifests
from mlplatform.lib.spec import default_spec_path, load_spec
from mlplatform_tests.cluster import derived_image
from mlplatform_tests.load import LoadLoop

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
EXAMPLE_CSV = default_spec_path().parent / "penguins.csv"
RUN_SECONDS = 1800  # training, `bentoml containerize` (minutes on 2 busy cores) and the rollout


@dataclass(frozen=True)
class Cluster:
    environment: dict[str, str]
    namespace: str
    token: str
    home: Path
    spec: Path

    def mlplatform(self, *args: str, spec: Path | None = None, **settings: str) -> subprocess.CompletedProcess[str]:
        """The command as a user runs it against this cluster: MLPLATFORM_DEPLOY=k8s (unless ``settings`` say
        otherwise), this namespace."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("MLPLATFORM_", "DAGSTER_", "BENTOML_HOME"))}
        environ |= self.environment | {
            "MLPLATFORM_DEPLOY": "k8s",
            "MLPLATFORM_K8S_NAMESPACE": self.namespace,
            "MLPLATFORM_API_TOKEN": self.token,
        }
        environ |= settings
        command = [sys.executable, "-m", "mlplatform.cli", *args, "--home", str(self.home)]
        command += ["--spec", str(spec or self.spec)]
        return subprocess.run(command, env=environ, capture_output=True, text=True, timeout=RUN_SECONDS)

    def deployer(self):
        from mlplatform.resources import kubernetes_deploy

        api = kubernetes_deploy.connect(self.environment.get("KUBECONFIG"), None)
        return kubernetes_deploy.KubernetesDeployer(api, self.namespace, token=self.token)

    def latest(self, asset: str) -> dict:
        from mlplatform import summary
        from mlplatform.cli import opened_instance

        with opened_instance(self.home / "dagster") as instance:
            return summary.latest_metadata(instance, asset)


def write_spec(path: Path, trials: int) -> Path:
    document = {
        "name": "penguins",
        "problem": {"task": "classification", "target": "species", "drop_columns": ["year"]},
        "source": {"uri": str(EXAMPLE_CSV)},
        "training": {"candidates": {"logistic_regression": {"estimator": "logistic_regression", "trials": trials}}},
        # small pods on a small shared node; a short deadline, so a version that never gets ready is undone soon
        "deployment": {
            "replicas": 2,
            "cpu": "100m",
            "memory": "256Mi",
            "rollout_timeout_seconds": 150,
            "watch_seconds": 5,
        },
    }
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def cluster(cluster_environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from kubernetes import client

    from mlplatform.resources import kubernetes_deploy

    folder = tmp_path_factory.mktemp("k8s-deploy")
    environment = cluster_environment
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():  # docker and the kubernetes client of this process too
            patch.setenv(name, value)
        api = kubernetes_deploy.connect(environment.get("KUBECONFIG"), None)
        core = client.CoreV1Api(api)
        namespace = f"mlp-k8sdeploy-{secrets.token_hex(3)}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        try:
            yield Cluster(
                environment, namespace, secrets.token_urlsafe(24), folder / "home", write_spec(folder / "spec.yaml", 2)
            )
        finally:
            core.delete_namespace(namespace)


@pytest.fixture(scope="module")
def deployed(cluster: Cluster) -> dict:
    """The whole graph run once: trained, promoted, built, containerized, pushed and rolled out."""
    started = time.monotonic()
    done = cluster.mlplatform("run")
    assert done.returncode == 0, f"mlplatform run exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    print(f"\n[timing] mlplatform run with MLPLATFORM_DEPLOY=k8s: {time.monotonic() - started:.0f} s")
    return cluster.latest("kubernetes_deployment") | {"stdout": done.stdout}


def predict(url: str, token: str | None, row: dict) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}/predict", json=row, headers=headers, timeout=30)


def test_the_graph_deploys_the_champion_with_two_replicas_answering_through_the_service(
    cluster: Cluster, deployed: dict
) -> None:
    champion = cluster.latest("champion_model")["tag"]
    image = cluster.latest("model_image")

    assert deployed["model_tag"] == champion
    assert deployed["image_digest"] == image["digest"] and "@sha256:" in image["digest"]
    assert deployed["replicas_ready"] == 2 and deployed["revision"] >= 1
    assert f"kubernetes    {cluster.namespace}/penguins-predictor serves {champion}" in deployed["stdout"]
    row = json.loads(deployed["example_row"])
    answer = predict(deployed["url"], cluster.token, row)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_tag"] == champion
    assert predict(deployed["url"], None, row).status_code == 401  # the token from the Secret is required
    assert predict(deployed["url"], "not-the-token", row).status_code == 401
    assert cluster.token not in json.dumps(deployed)  # neither in the asset's metadata nor in the run's output


def test_the_pods_run_as_non_root_on_a_read_only_root_filesystem(cluster: Cluster, deployed: dict) -> None:
    from kubernetes import client

    core = client.CoreV1Api(cluster.deployer().api)
    pods = core.list_namespaced_pod(cluster.namespace, label_selector="app.kubernetes.io/name=penguins-predictor")
    running = [pod for pod in pods.items if pod.status.phase == "Running" and not pod.metadata.deletion_timestamp]

    assert len(running) == 2
    for pod in running:
        spec = pod.spec
        assert spec.security_context.run_as_non_root is True and spec.security_context.run_as_user != 0
        assert spec.automount_service_account_token is False
        (container,) = spec.containers
        assert container.image == deployed["image_digest"]
        assert container.security_context.read_only_root_filesystem is True
        assert container.security_context.allow_privilege_escalation is False
        assert container.security_context.capabilities.drop == ["ALL"]
        assert all(c.ready for c in pod.status.container_statuses)
        token = [e for e in container.env if e.name == "MLPLATFORM_API_TOKEN"][0]
        assert token.value is None and token.value_from.secret_key_ref.name == "penguins-api-token"


def test_status_says_what_the_cluster_serves(cluster: Cluster, deployed: dict) -> None:
    done = cluster.mlplatform("status")

    assert done.returncode == 0, done.stderr
    assert f"{cluster.namespace}/penguins-predictor serves {deployed['model_tag']}" in done.stdout
    assert f"revision  {deployed['revision']}" in done.stdout
    assert f"image     {deployed['image_digest']}" in done.stdout
    assert "pods      2 of 2 ready" in done.stdout


@pytest.fixture(scope="module")
def promoted(cluster: Cluster, deployed: dict) -> dict:
    """A second model trained (another spec), made champion and rolled out while a load loop hits the Service."""
    row = json.loads(deployed["example_row"])
    started = time.monotonic()
    with LoadLoop(deployed["url"], cluster.token, row, interval=0.1) as answers:
        trained = cluster.mlplatform("run", spec=write_spec(cluster.spec.parent / "spec-2.yaml", 3))
        assert trained.returncode in (0, 3), f"exit {trained.returncode}:\n{trained.stdout[-3000:]}{trained.stderr}"
        if trained.returncode == 3:  # the gate kept the champion: promote the new model by hand
            challenger = cluster.latest("challenger_model")["tag"]
            done = cluster.mlplatform("promote", challenger, "--reason", "a rollout under load")
            assert done.returncode == 0, f"{done.stdout[-3000:]}{done.stderr[-3000:]}"
        time.sleep(2)  # a few answers from the new version alone
    print(f"\n[timing] second model trained, promoted and rolled out: {time.monotonic() - started:.0f} s")
    return {"answers": answers, "first": deployed, "second": cluster.latest("kubernetes_deployment")}


def test_a_new_champion_rolls_out_under_load_without_a_failed_request(cluster: Cluster, promoted: dict) -> None:
    answers, first, second = promoted["answers"], promoted["first"], promoted["second"]

    assert second["model_tag"] == cluster.latest("champion_model")["tag"] != first["model_tag"]
    assert second["revision"] > first["revision"] and second["replicas_ready"] == 2
    assert answers.failures == [], f"{len(answers.failures)} of {answers.sent} failed: {answers.failures[:5]}"
    assert answers.models[first["model_tag"]] > 0 and answers.models[second["model_tag"]] > 0  # both answered
    assert answers.last_model == second["model_tag"]


def roll_out_under_load(cluster: Cluster, serving: dict, image: str, model_tag: str):
    """``image`` deployed as ``model_tag`` by the adapter, the check being the asset's, under load."""
    from mlplatform.defs.deployment.assets import prediction_check

    row = json.loads(serving["example_row"])
    settings = load_spec(cluster.spec).deployment
    release = manifests.ModelDeployment("penguins", image, model_tag, settings, namespace=cluster.namespace)
    with LoadLoop(serving["url"], cluster.token, row, interval=0.1) as answers:
        outcome = cluster.deployer().deploy(release, check=prediction_check(row, model_tag))
        time.sleep(2)
    return outcome, answers


def test_a_version_that_never_gets_ready_is_rolled_back_while_the_old_one_answers(
    cluster: Cluster, promoted: dict
) -> None:
    serving = promoted["second"]
    # a value of MLPLATFORM_AUTH the service refuses at start-up: its pods never get ready
    registry = cluster.environment["MLPLATFORM_REGISTRY"]
    unready = derived_image(serving["image_digest"], registry, "predictor-unready", "ENV MLPLATFORM_AUTH=refused")

    outcome, answers = roll_out_under_load(cluster, serving, unready, serving["model_tag"])

    assert outcome.rolled_back and "cannot become ready" in outcome.reason, outcome.reason
    assert outcome.serving.image == serving["image_digest"] and outcome.serving.model_tag == serving["model_tag"]
    assert outcome.serving.ready_replicas == 2 and outcome.serving.revision > serving["revision"]
    assert answers.failures == [], f"{len(answers.failures)} of {answers.sent} failed: {answers.failures[:5]}"
    assert set(answers.models) == {serving["model_tag"]}
    failed, undone = outcome.rollout_seconds, outcome.rollback_seconds
    print(f"\n[timing] unready version: failed after {failed:.0f} s, undone in {undone:.0f} s")
    done = cluster.mlplatform("status")
    assert "ROLLED BACK" in done.stdout and "cannot become ready" in done.stdout


def test_a_version_that_answers_for_another_model_is_rolled_back(cluster: Cluster, promoted: dict) -> None:
    serving, first = promoted["second"], promoted["first"]

    # the first champion's image, deployed as if it served the current champion: its answers name another model
    outcome, answers = roll_out_under_load(cluster, serving, first["image_digest"], serving["model_tag"])

    assert outcome.rolled_back, outcome
    assert f"answered for {first['model_tag']}, not {serving['model_tag']}" in outcome.reason
    # caught on the first new pod, on its own address, before the rollout replaced the other old pod
    early = f"of revision {outcome.failed_revision} failed the smoke prediction as soon as it was ready"
    assert early in outcome.reason
    wrong = answers.models[first["model_tag"]]
    print(f"\n[rollback] {wrong} of {answers.sent} answers came from the wrong version before it was undone")
    assert outcome.serving.image == serving["image_digest"] and outcome.serving.ready_replicas == 2
    assert answers.failures == [], f"{len(answers.failures)} of {answers.sent} failed: {answers.failures[:5]}"
    assert answers.last_model == serving["model_tag"]


def test_rollback_by_hand_brings_the_previous_revision_back(cluster: Cluster, promoted: dict) -> None:
    before = cluster.deployer().current("penguins")

    done = cluster.mlplatform("rollback", "--target", "k8s", "--reason", "checking the command")

    assert done.returncode == 0, done.stderr
    after = cluster.deployer().current("penguins")
    assert after.revision > before.revision and after.ready_replicas == 2
    assert after.image != before.image  # the revision before the current one: another image
    assert f"serves {after.model_tag} again" in done.stdout


def test_deploy_rolls_the_champion_out_again(cluster: Cluster, promoted: dict) -> None:
    """After the rollback by hand above the cluster serves an older model: `deploy --target k8s` (in a shell whose
    MLPLATFORM_DEPLOY says none) builds the champion's bento and image again and rolls it out."""
    champion = cluster.latest("champion_model")["tag"]
    before = cluster.deployer().current("penguins")

    done = cluster.mlplatform("deploy", "--target", "k8s", MLPLATFORM_DEPLOY="none")

    assert done.returncode == 0, f"{done.stdout[-3000:]}{done.stderr[-3000:]}"
    after = cluster.deployer().current("penguins")
    assert after.model_tag == champion and after.revision > before.revision and after.ready_replicas == 2
    assert f"kubernetes    {cluster.namespace}/penguins-predictor serves {champion}" in done.stdout
