"""The champion's Kubernetes manifests, as plain dicts: Deployment, Service, ServiceAccount,
HorizontalPodAutoscaler and PodDisruptionBudget. Pure: the cluster's served API versions come in as a list
(``mlplatform.resources.kubernetes_api`` asks a cluster for them), and nothing here talks to one.

What the container must be able to write, with a read-only root filesystem, was read off ``bentoml serve`` of
a bento laid out as in its image (strace of every file created): BentoML's home (it creates ``bentos``,
``models``, ``envs``, ``tmp`` and ``prometheus_multiproc_dir`` there at start-up), ``/tmp`` (its Unix sockets
and temporary files), ``/dev/shm`` (semaphores; the runtime's own tmpfs, writable under a read-only root) and
the prediction log. The image's ``BENTOML_HOME`` is ``/home/bentoml/``, which also holds the bento, so it is
pointed at an emptyDir of its own instead: the bento serves from ``$BENTO_PATH``, models included."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from mlplatform.lib.spec import DeploymentSettings

PORT = 3000  # BentoML's port in its images
# BentoML's images run as the user ``bentoml``, uid and gid 1034 (bentoml/_internal/container/generate.py). A
# numeric id: the kubelet cannot check that a user *name* is not root, so runAsNonRoot needs it.
BENTO_UID = 1034
BENTOML_HOME = "/var/lib/bentoml"
PREDICTION_LOG = "/var/lib/mlplatform/predictions"
# The Service stops routing to a terminating pod only once kube-proxy on every node has seen its endpoint go;
# the pod keeps answering meanwhile, then gets SIGTERM. The grace period covers the sleep and BentoML's own
# shutdown (in-flight requests, the prediction log's last rows).
PRESTOP_SECONDS = 10
SHUTDOWN_SECONDS = 30
TOKEN_KEY = "token"

_DIGEST = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


class ManifestError(ValueError):
    """A deployment that cannot be described to Kubernetes; the message names the field and the value."""


@dataclass(frozen=True)
class ApiVersions:
    """The API versions the manifests are written for, chosen from what the cluster serves."""

    autoscaling: Literal["autoscaling/v2", "autoscaling/v2beta2"]
    policy: Literal["policy/v1", "policy/v1beta1"]


def choose_api_versions(served: Iterable[str]) -> ApiVersions:
    """The newest HorizontalPodAutoscaler and PodDisruptionBudget versions among the cluster's served group
    versions ("autoscaling/v2", "policy/v1beta1", ...): autoscaling/v2 from Kubernetes 1.23 (v2beta2 gone in
    1.26), policy/v1 from 1.21 (v1beta1 gone in 1.25)."""
    served = set(served)
    autoscaling = next((v for v in ("autoscaling/v2", "autoscaling/v2beta2") if v in served), None)
    policy = next((v for v in ("policy/v1", "policy/v1beta1") if v in served), None)
    if autoscaling is None or policy is None:
        missing = [
            g for g, v in (("autoscaling/v2 or v2beta2", autoscaling), ("policy/v1 or v1beta1", policy)) if not v
        ]
        raise ManifestError(f"the cluster serves neither of {' nor '.join(missing)} (it serves {sorted(served)})")
    return ApiVersions(autoscaling=autoscaling, policy=policy)


def served_in(kubernetes_version: str) -> list[str]:
    """The autoscaling and policy group versions a Kubernetes release serves (its changelogs): for choosing
    versions without a cluster to ask, as ``mlplatform manifests --kubernetes-version`` does."""
    match = re.fullmatch(r"v?1\.(\d+)(?:\.\d+)?", kubernetes_version)
    if match is None:
        raise ManifestError(f"Kubernetes version {kubernetes_version!r}: write 1.MINOR, such as 1.20 or 1.31")
    minor = int(match.group(1))
    ranges = {  # group version: (first minor serving it, first minor without it)
        "autoscaling/v2": (23, None),
        "autoscaling/v2beta2": (12, 26),
        "policy/v1": (21, None),
        "policy/v1beta1": (5, 25),
    }
    return [name for name, (first, gone) in ranges.items() if first <= minor and (gone is None or minor < gone)]


NEWEST = ApiVersions(autoscaling="autoscaling/v2", policy="policy/v1")


@dataclass(frozen=True)
class ModelDeployment:
    """What to deploy: the image (pinned by digest), the model its bento pins, and the spec's sizing."""

    project: str
    image: str  # registry/repository@sha256:<64 hex>
    model_tag: str  # project:version
    settings: DeploymentSettings = DeploymentSettings()
    namespace: str | None = None

    def __post_init__(self) -> None:
        if not _DIGEST.match(self.image):
            raise ManifestError(f"image {self.image!r}: pin it by digest, registry/repository@sha256:<64 hex digits>")
        if ":" not in self.model_tag:
            raise ManifestError(f"model_tag {self.model_tag!r}: write project:version")

    @property
    def name(self) -> str:
        return dns_label(f"{self.project}-predictor")

    @property
    def token_secret(self) -> str:
        """The Secret holding the API token under ``TOKEN_KEY``: made by whoever deploys, never written here."""
        return dns_label(f"{self.project}-api-token")


def dns_label(text: str) -> str:
    """A name Kubernetes takes for any object (an RFC 1035 label): lower case, digits and '-', at most 63."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    label = re.sub(r"^[^a-z]+", "", label)
    return _shorten(label, "-") or "model"


def label_value(text: str) -> str:
    """``text`` as a label value: letters, digits, '-', '_', '.', at most 63, alphanumeric at both ends."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", ".", text).strip("-_.")
    return _shorten(value, ".")


def _shorten(text: str, separator: str) -> str:
    """At most 63 characters; a cut one ends with a hash of the whole, so two long texts stay apart."""
    if len(text) <= 63:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{text[:52].rstrip('-_.')}{separator}{digest}"


def selector(deployment: ModelDeployment) -> dict[str, str]:
    """What selects the pods: the same for every model version (a Deployment's selector cannot change)."""
    return {"app.kubernetes.io/name": deployment.name, "app.kubernetes.io/component": "predictor"}


def labels(deployment: ModelDeployment) -> dict[str, str]:
    return {
        **selector(deployment),
        "app.kubernetes.io/part-of": label_value(deployment.project),
        "app.kubernetes.io/managed-by": "mlplatform",
        "mlplatform/model": label_value(deployment.model_tag),
    }


def annotations(deployment: ModelDeployment) -> dict[str, str]:
    """The exact model tag and image (a label value cannot hold a ':' or more than 63 characters)."""
    return {"mlplatform/model-tag": deployment.model_tag, "mlplatform/image": deployment.image}


def manifests(deployment: ModelDeployment, versions: ApiVersions = NEWEST) -> list[dict]:
    """Every object, in the order to apply them: who the pods run as before the pods."""
    return [
        service_account(deployment),
        deployment_manifest(deployment),
        service(deployment),
        autoscaler(deployment, versions.autoscaling),
        disruption_budget(deployment, versions.policy),
    ]


def _metadata(deployment: ModelDeployment, **extra: object) -> dict:
    metadata = {"name": deployment.name, "labels": labels(deployment), **extra}
    if deployment.namespace:
        metadata["namespace"] = deployment.namespace
    return metadata


def service_account(deployment: ModelDeployment) -> dict:
    """An identity of its own with no Role bound and no token mounted: the service never calls the API."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(deployment),
        "automountServiceAccountToken": False,
    }


def deployment_manifest(deployment: ModelDeployment) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(deployment, annotations=annotations(deployment)),
        "spec": {
            "replicas": deployment.settings.replicas,
            "selector": {"matchLabels": selector(deployment)},
            # A new pod must be ready before an old one goes: capacity never drops during a rollout.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "revisionHistoryLimit": 5,  # earlier ReplicaSets to roll back to
            # Progressing=False (ProgressDeadlineExceeded) when the new pods are not ready by then: a rollback
            "progressDeadlineSeconds": deployment.settings.rollout_timeout_seconds,
            "template": {
                "metadata": {"labels": labels(deployment), "annotations": annotations(deployment)},
                "spec": _pod_spec(deployment),
            },
        },
    }


def _pod_spec(deployment: ModelDeployment) -> dict:
    return {
        "serviceAccountName": deployment.name,
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": PRESTOP_SECONDS + SHUTDOWN_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": BENTO_UID,
            "runAsGroup": BENTO_UID,
            "fsGroup": BENTO_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(deployment)],
        "volumes": [{"name": name, "emptyDir": {}} for name, _ in _WRITABLE],
    }


# The only places the container writes (see the module's docstring); the rest of its filesystem is read-only.
_WRITABLE = (("tmp", "/tmp"), ("bentoml-home", BENTOML_HOME), ("prediction-log", PREDICTION_LOG))


def _container(deployment: ModelDeployment) -> dict:
    def probe(path: str, *, period: int, failures: int) -> dict:
        return {
            "httpGet": {"path": path, "port": "http"},
            "periodSeconds": period,
            "timeoutSeconds": 5,
            "failureThreshold": failures,
        }

    return {
        "name": "predictor",
        "image": deployment.image,
        "imagePullPolicy": "IfNotPresent",  # a digest never names another image
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [
            {
                "name": "MLPLATFORM_API_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": deployment.token_secret, "key": TOKEN_KEY}},
            },
            {"name": "MLPLATFORM_PREDICTION_LOG", "value": PREDICTION_LOG},
            {"name": "BENTOML_HOME", "value": BENTOML_HOME},
            {"name": "BENTOML_DO_NOT_TRACK", "value": "true"},
        ],
        "resources": {
            "requests": {"cpu": deployment.settings.cpu, "memory": deployment.settings.memory},
            "limits": {"cpu": deployment.settings.cpu_limit, "memory": deployment.settings.memory_limit},
        },
        # Up to 2 minutes to load the model and answer the warm-up row; liveness and readiness wait for it.
        "startupProbe": probe("/livez", period=5, failures=24),
        "livenessProbe": probe("/livez", period=10, failures=3),
        # Out of the Service as soon as it stops answering /readyz (the model not loaded, or shutting down).
        "readinessProbe": probe("/readyz", period=5, failures=2),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SECONDS)]}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": name, "mountPath": path} for name, path in _WRITABLE],
    }


def service(deployment: ModelDeployment) -> dict:
    port = {"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}
    if deployment.settings.node_port is not None:
        port["nodePort"] = deployment.settings.node_port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(deployment),
        "spec": {"type": deployment.settings.service_type, "selector": selector(deployment), "ports": [port]},
    }


def autoscaler(deployment: ModelDeployment, api_version: str) -> dict:
    """autoscaling/v2 and v2beta2 share this shape (metrics[].resource.target); v1's differs and is not used."""
    return {
        "apiVersion": api_version,
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(deployment),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment.name},
            "minReplicas": deployment.settings.min_replicas,
            "maxReplicas": deployment.settings.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": deployment.settings.target_cpu_percent},
                    },
                }
            ],
        },
    }


def disruption_budget(deployment: ModelDeployment, api_version: str) -> dict:
    """At least one pod through voluntary disruptions (a node drain) when there are two or more; with one, at
    most one down, or the budget would block every drain. v1 and v1beta1 differ only for an empty selector."""
    budget = {"minAvailable": 1} if deployment.settings.min_replicas >= 2 else {"maxUnavailable": 1}
    return {
        "apiVersion": api_version,
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(deployment),
        "spec": {**budget, "selector": {"matchLabels": selector(deployment)}},
    }
