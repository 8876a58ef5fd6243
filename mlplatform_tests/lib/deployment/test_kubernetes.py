"""The champion's Kubernetes manifests: valid against the Kubernetes schemas of v1.20 and of a current release
(kubernetes-validate's bundled, strict schemas: an unknown field fails), locked down, probed, pinned by digest,
and written for the API versions the cluster serves."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from mlplatform.lib.deployment import kubernetes
from mlplatform.lib.spec import DeploymentSettings

# kubernetes-validate 1.28 resolves its bundled schemas' file:// references with jsonschema's older resolver
pytestmark = [
    pytest.mark.filterwarnings("ignore:jsonschema.RefResolver is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The metaschema specified by:DeprecationWarning"),
]

DIGEST = "127.0.0.1:15000/predictor@sha256:" + "3f" * 32
# `kubectl api-versions` of a v1.20 cluster (the local one) and of a v1.31 one.
SERVED_1_20 = [
    "admissionregistration.k8s.io/v1",
    "admissionregistration.k8s.io/v1beta1",
    "apiextensions.k8s.io/v1",
    "apiextensions.k8s.io/v1beta1",
    "apiregistration.k8s.io/v1",
    "apiregistration.k8s.io/v1beta1",
    "apps/v1",
    "authentication.k8s.io/v1",
    "authentication.k8s.io/v1beta1",
    "authorization.k8s.io/v1",
    "authorization.k8s.io/v1beta1",
    "autoscaling/v1",
    "autoscaling/v2beta1",
    "autoscaling/v2beta2",
    "batch/v1",
    "batch/v1beta1",
    "certificates.k8s.io/v1",
    "certificates.k8s.io/v1beta1",
    "coordination.k8s.io/v1",
    "coordination.k8s.io/v1beta1",
    "discovery.k8s.io/v1beta1",
    "events.k8s.io/v1",
    "events.k8s.io/v1beta1",
    "extensions/v1beta1",
    "flowcontrol.apiserver.k8s.io/v1beta1",
    "networking.k8s.io/v1",
    "networking.k8s.io/v1beta1",
    "node.k8s.io/v1",
    "node.k8s.io/v1beta1",
    "policy/v1beta1",
    "rbac.authorization.k8s.io/v1",
    "rbac.authorization.k8s.io/v1beta1",
    "scheduling.k8s.io/v1",
    "scheduling.k8s.io/v1beta1",
    "storage.k8s.io/v1",
    "storage.k8s.io/v1beta1",
    "v1",
]
SERVED_1_31 = [
    "admissionregistration.k8s.io/v1",
    "apiextensions.k8s.io/v1",
    "apiregistration.k8s.io/v1",
    "apps/v1",
    "authentication.k8s.io/v1",
    "authorization.k8s.io/v1",
    "autoscaling/v1",
    "autoscaling/v2",
    "batch/v1",
    "certificates.k8s.io/v1",
    "coordination.k8s.io/v1",
    "discovery.k8s.io/v1",
    "events.k8s.io/v1",
    "flowcontrol.apiserver.k8s.io/v1",
    "networking.k8s.io/v1",
    "node.k8s.io/v1",
    "policy/v1",
    "rbac.authorization.k8s.io/v1",
    "scheduling.k8s.io/v1",
    "storage.k8s.io/v1",
    "v1",
]
# The oldest and newest releases whose schemas this kubernetes-validate bundles (newer releases of the package
# no longer carry v1.20's); policy/v1 and autoscaling/v2 have not changed shape since 1.28 for these fields.
CLUSTERS = {"1.20": SERVED_1_20, "1.28": SERVED_1_31}
SIZES = {
    "defaults": DeploymentSettings(),
    "one replica, NodePort": DeploymentSettings(
        replicas=1, min_replicas=1, max_replicas=3, service_type="NodePort", node_port=30080
    ),
}


def deployment(settings: DeploymentSettings | None = None, **changes: object) -> kubernetes.ModelDeployment:
    fields = {"project": "penguins", "image": DIGEST, "model_tag": "penguins:qh6hpkhm3op5gax4"}
    fields["settings"] = settings or DeploymentSettings()
    return kubernetes.ModelDeployment(**(fields | changes))


def by_kind(manifests: list[dict]) -> dict[str, dict]:
    return {manifest["kind"]: manifest for manifest in manifests}


def pod(manifests: list[dict]) -> dict:
    return by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("release", CLUSTERS)
def test_every_manifest_is_valid_for_the_api_versions_the_cluster_serves(release: str, size: str) -> None:
    versions = kubernetes.choose_api_versions(CLUSTERS[release])
    manifests = kubernetes.manifests(deployment(SIZES[size], namespace="models"), versions)

    assert [m["kind"] for m in manifests] == [
        "ServiceAccount",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]
    for manifest in manifests:
        # raises, naming the field, on anything the release's schema does not allow
        assert kubernetes_validate.validate(manifest, release, strict=True) == release, manifest["kind"]


def test_the_validation_is_not_vacuous() -> None:
    """A misspelled field, a wrong type and an API version the release does not serve all fail it."""
    manifests = by_kind(kubernetes.manifests(deployment(), kubernetes.NEWEST))
    misspelled = copy.deepcopy(manifests["Deployment"])
    container = misspelled["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(misspelled, "1.28", strict=True)
    wrong_type = copy.deepcopy(manifests["Service"])
    wrong_type["spec"]["ports"][0]["port"] = "three thousand"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, "1.28", strict=True)
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):  # autoscaling/v2, policy/v1: not in 1.20
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            kubernetes_validate.validate(manifests[kind], "1.20", strict=True)


@pytest.mark.parametrize(
    ("served", "autoscaling", "policy"),
    [
        (SERVED_1_20, "autoscaling/v2beta2", "policy/v1beta1"),
        (SERVED_1_31, "autoscaling/v2", "policy/v1"),
        (kubernetes.served_in("1.21"), "autoscaling/v2beta2", "policy/v1"),  # PDB went GA first
        (kubernetes.served_in("1.23"), "autoscaling/v2", "policy/v1"),  # both old ones still served: newest wins
    ],
)
def test_api_versions_are_the_newest_the_cluster_serves(served: list[str], autoscaling: str, policy: str) -> None:
    chosen = kubernetes.choose_api_versions(served)

    assert (chosen.autoscaling, chosen.policy) == (autoscaling, policy)
    manifests = by_kind(kubernetes.manifests(deployment(), chosen))
    assert manifests["HorizontalPodAutoscaler"]["apiVersion"] == autoscaling
    assert manifests["PodDisruptionBudget"]["apiVersion"] == policy


def test_the_release_table_agrees_with_the_served_lists() -> None:
    assert kubernetes.choose_api_versions(kubernetes.served_in("1.20")) == kubernetes.choose_api_versions(SERVED_1_20)
    assert kubernetes.choose_api_versions(kubernetes.served_in("v1.31.2")) == kubernetes.NEWEST
    with pytest.raises(kubernetes.ManifestError, match="1.MINOR"):
        kubernetes.served_in("latest")


def test_a_cluster_serving_no_usable_autoscaler_is_refused_naming_what_it_serves() -> None:
    with pytest.raises(kubernetes.ManifestError, match=r"autoscaling/v2 or v2beta2.*autoscaling/v1"):
        kubernetes.choose_api_versions(["v1", "apps/v1", "autoscaling/v1", "policy/v1"])


def test_the_two_autoscaler_and_budget_versions_differ_only_in_api_version() -> None:
    """v2beta2 and v2 share the metric shape (metrics[].resource.target), v1beta1 and v1 the budget's."""
    old = by_kind(kubernetes.manifests(deployment(), kubernetes.choose_api_versions(SERVED_1_20)))
    new = by_kind(kubernetes.manifests(deployment(), kubernetes.NEWEST))
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert {**old[kind], "apiVersion": "-"} == {**new[kind], "apiVersion": "-"}
    target = new["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["resource"]["target"]
    assert target == {"type": "Utilization", "averageUtilization": 70}


def test_pods_run_unprivileged_on_a_read_only_root_with_a_writable_folder_for_each_write() -> None:
    spec = pod(kubernetes.manifests(deployment()))
    (container,) = spec["containers"]

    assert spec["securityContext"]["runAsNonRoot"] is True
    assert isinstance(spec["securityContext"]["runAsUser"], int) and spec["securityContext"]["runAsUser"] > 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert spec["automountServiceAccountToken"] is False
    assert "hostNetwork" not in spec
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert all(volume == {"name": name, "emptyDir": {}} for name, volume in volumes.items())
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert set(mounts.values()) == set(volumes)
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    # what `bentoml serve` writes: /tmp, its home (prometheus_multiproc_dir, bentos, models, envs, tmp), the log
    assert {"/tmp", env["BENTOML_HOME"], env["MLPLATFORM_PREDICTION_LOG"]} <= set(mounts)


def test_the_service_account_has_no_token_and_no_role() -> None:
    manifests = kubernetes.manifests(deployment())
    account = by_kind(manifests)["ServiceAccount"]

    assert account["automountServiceAccountToken"] is False
    assert pod(manifests)["serviceAccountName"] == account["metadata"]["name"]
    assert not {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"} & set(by_kind(manifests))


def test_probes_rollout_and_shutdown_keep_every_request_answered() -> None:
    manifests = by_kind(kubernetes.manifests(deployment()))
    spec = manifests["Deployment"]["spec"]
    (container,) = spec["template"]["spec"]["containers"]

    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60  # a model load is not a failure
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and int(sleep[1]) > 0
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] > int(sleep[1])
    service = manifests["Service"]["spec"]
    assert (
        service["selector"]
        == spec["selector"]["matchLabels"]
        == manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    )
    assert service["ports"][0]["targetPort"] == "http" and service["type"] == "ClusterIP"


def test_sizing_comes_from_the_spec() -> None:
    settings = DeploymentSettings(
        replicas=3, min_replicas=2, max_replicas=6, cpu="500m", memory="1Gi", cpu_limit="2", memory_limit="2Gi"
    )
    manifests = by_kind(kubernetes.manifests(deployment(settings)))
    (container,) = pod(list(manifests.values()))["containers"]

    assert manifests["Deployment"]["spec"]["replicas"] == 3
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    autoscaler = manifests["HorizontalPodAutoscaler"]["spec"]
    assert (autoscaler["minReplicas"], autoscaler["maxReplicas"]) == (2, 6)
    assert autoscaler["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "penguins-predictor"}
    assert manifests["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    one = by_kind(kubernetes.manifests(deployment(SIZES["one replica, NodePort"])))
    # a budget of one available pod out of one would block every node drain
    assert one["PodDisruptionBudget"]["spec"] == {
        "maxUnavailable": 1,
        "selector": one["Deployment"]["spec"]["selector"],
    }
    assert one["Service"]["spec"]["type"] == "NodePort" and one["Service"]["spec"]["ports"][0]["nodePort"] == 30080


def test_the_image_is_pinned_by_digest() -> None:
    (container,) = pod(kubernetes.manifests(deployment()))["containers"]

    assert container["image"] == DIGEST


@pytest.mark.parametrize(
    "image",
    ["127.0.0.1:15000/predictor:abc", "predictor:latest", "predictor@sha256:abc", f"{DIGEST}:latest", ""],
)
def test_an_image_not_pinned_by_digest_is_refused(image: str) -> None:
    with pytest.raises(kubernetes.ManifestError, match="pin it by digest"):
        deployment(image=image)


def test_the_token_comes_from_a_secret_and_no_manifest_holds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    token = "tok-5d1c0a7e-never-in-a-manifest"
    monkeypatch.setenv("MLPLATFORM_API_TOKEN", token)
    manifests = kubernetes.manifests(deployment())
    (container,) = pod(manifests)["containers"]

    (variable,) = [v for v in container["env"] if v["name"] == "MLPLATFORM_API_TOKEN"]
    assert variable == {
        "name": "MLPLATFORM_API_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "penguins-api-token", "key": "token"}},
    }
    assert token not in yaml.safe_dump_all(manifests)
    assert "Secret" not in by_kind(manifests)  # made by whoever deploys, from their own secret store


def test_the_model_tag_is_a_label_and_the_full_tag_an_annotation() -> None:
    manifests = by_kind(kubernetes.manifests(deployment()))
    template = manifests["Deployment"]["spec"]["template"]["metadata"]

    assert template["labels"]["mlplatform/model"] == "penguins.qh6hpkhm3op5gax4"
    assert template["annotations"] == {"mlplatform/model-tag": "penguins:qh6hpkhm3op5gax4", "mlplatform/image": DIGEST}
    # the selector cannot change once the Deployment exists: it names the app, never the model version
    assert "mlplatform/model" not in manifests["Deployment"]["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("penguins:qh6hpkhm3op5gax4", "penguins.qh6hpkhm3op5gax4"),
        ("my_project:v1", "my_project.v1"),
        ("-odd name!:x-", "odd.name.x"),
    ],
)
def test_label_values_follow_kubernetes_syntax(text: str, value: str) -> None:
    assert kubernetes.label_value(text) == value


def test_long_names_and_labels_are_cut_to_63_characters_and_stay_distinct() -> None:
    first, second = "p" * 60 + ":" + "a" * 20, "p" * 60 + ":" + "b" * 20
    cut = kubernetes.label_value(first)

    assert len(cut) == 63 and cut != kubernetes.label_value(second)
    long_project = deployment(project="a_very_long_project_name_" * 3, model_tag="a_very_long:v1")
    for manifest in kubernetes.manifests(long_project):
        assert len(manifest["metadata"]["name"]) <= 63
        assert kubernetes_validate.validate(manifest, "1.28", strict=True)
    assert long_project.name.startswith("a-very-long-project-name-")


def test_a_model_tag_without_a_version_is_refused() -> None:
    with pytest.raises(kubernetes.ManifestError, match="project:version"):
        deployment(model_tag="penguins")
