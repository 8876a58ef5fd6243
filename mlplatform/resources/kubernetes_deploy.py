"""The champion on a Kubernetes cluster, through the ``kubernetes`` client: its manifests applied (server-side
apply), its API token put in a Secret, the rollout watched, a prediction sent through the Service, and the
rollout undone (back to the previous ReplicaSet's pod template, as ``kubectl rollout undo`` does) when the new
version is not ready in time, answers the smoke prediction wrong, or fails too many requests in its first
seconds. Dagster-free; the manifests themselves are ``mlplatform.lib.deployment.kubernetes``'s.

A Deployment keeps its earlier ReplicaSets (``revisionHistoryLimit``), each with the pod template of one
revision (``deployment.kubernetes.io/revision``); undoing puts the previous one's template back, so the
Deployment controller scales that ReplicaSet up again and the new one down. With ``maxUnavailable: 0`` the old
pods never stopped serving while the new ones failed, so the old version answers throughout."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass

import urllib3
from kubernetes import client
from kubernetes.dynamic import DynamicClient

from mlplatform.lib.deployment import kubernetes as manifests
from mlplatform.resources import kubernetes_api

FIELD_MANAGER = "mlplatform"
REVISION = "deployment.kubernetes.io/revision"
MODEL_TAG = "mlplatform/model-tag"
IMAGE = "mlplatform/image"
ROLLBACK_REASON = "mlplatform/rollback-reason"  # on the Deployment after an automatic rollback, until the next deploy
FAILED = "mlplatform/failed"  # on a ReplicaSet whose version was rolled back: `rollback` never goes back to it
# A pod waiting for one of these will not become ready by waiting longer: roll back now, not at the deadline.
HOPELESS = {
    "CrashLoopBackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
}
POLL_SECONDS = 1.0
WATCH_INTERVAL_SECONDS = 0.5  # between the requests of the error-rate check


class DeployError(RuntimeError):
    """The cluster refused something, or there is nothing to do what was asked with; the message says which."""


class RolloutFailed(DeployError):
    """The new version was not ready in time, answered wrong, or failed requests: ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Release:
    """What a Deployment serves: one revision's model and image, and how many of its pods are ready."""

    namespace: str
    name: str
    model_tag: str
    image: str
    revision: int
    replicas: int
    ready_replicas: int
    updated_replicas: int
    url: str  # where this process sends predictions: the Service
    rollback_reason: str = ""  # why the last deploy was undone, when it was


@dataclass(frozen=True)
class Outcome:
    """One deploy: what serves afterwards, and, when the new version was rolled back, why and how fast."""

    serving: Release
    attempted_model_tag: str
    attempted_image: str
    previous: Release | None
    rolled_back: bool = False
    reason: str = ""
    failed_revision: int | None = None
    rollout_seconds: float = 0.0  # from the apply until the new version served alone (or failed)
    rollback_seconds: float | None = None  # from the failure until the old version served alone
    watched_requests: int = 0
    failed_requests: int = 0


def as_dict(kubernetes_object: object) -> dict:
    return client.ApiClient().sanitize_for_serialization(kubernetes_object)


class KubernetesDeployer:
    """Deploys the champion's image into ``namespace`` of the cluster ``api`` talks to. ``service_url``: where
    this process reaches the Service, when not at its ClusterIP (which answers from a pod, or from a machine on
    the pod network); ``token``: the API token the pods get through the Secret and the checks send."""

    def __init__(
        self, api: client.ApiClient, namespace: str, *, token: str | None, service_url: str | None = None
    ) -> None:
        self.api, self.namespace, self._token, self.service_url = api, namespace, token, service_url
        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)

    # -- what serves -------------------------------------------------------------------------------------------

    def token(self) -> str:
        if not self._token:
            raise DeployError(
                "MLPLATFORM_API_TOKEN is not set: the pods read their API token from a Secret made from it, and "
                "the checks after a rollout send it"
            )
        return self._token

    def current(self, project: str) -> Release | None:
        """What the project's Deployment serves now (its current revision), or None when there is none."""
        name = manifests.dns_label(f"{project}-predictor")
        try:
            deployment = self.apps.read_namespaced_deployment(name, self.namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise DeployError(f"reading Deployment {self.namespace}/{name}: {exc.status} {exc.reason}") from None
        return self._release(deployment)

    def _release(self, deployment: client.V1Deployment) -> Release:
        annotations = deployment.spec.template.metadata.annotations or {}
        status = deployment.status
        return Release(
            namespace=self.namespace,
            name=deployment.metadata.name,
            model_tag=annotations.get(MODEL_TAG, ""),
            image=deployment.spec.template.spec.containers[0].image,
            revision=_revision(deployment),
            replicas=deployment.spec.replicas or 0,
            ready_replicas=status.ready_replicas or 0,
            updated_replicas=status.updated_replicas or 0,
            url=self.url(deployment.metadata.name),
            rollback_reason=(deployment.metadata.annotations or {}).get(ROLLBACK_REASON, ""),
        )

    def url(self, name: str) -> str:
        if self.service_url:
            return self.service_url
        try:
            service = self.core.read_namespaced_service(name, self.namespace)
        except client.ApiException as exc:
            raise DeployError(f"reading Service {self.namespace}/{name}: {exc.status} {exc.reason}") from None
        return f"http://{service.spec.cluster_ip}:{manifests.PORT}"

    # -- deploying ---------------------------------------------------------------------------------------------

    def apply(self, deployment: manifests.ModelDeployment) -> None:
        """The token Secret, then every manifest, by server-side apply (this field manager owns what it sets)."""
        self._apply_secret(deployment.token_secret)
        served = kubernetes_api.served_group_versions(self.api)
        versions = manifests.choose_api_versions(served)
        dynamic = DynamicClient(self.api)
        for manifest in manifests.manifests(deployment, versions):
            resource = dynamic.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
            try:
                resource.server_side_apply(
                    body=manifest, namespace=self.namespace, field_manager=FIELD_MANAGER, force_conflicts=True
                )
            except client.ApiException as exc:
                what = f"{manifest['kind']} {self.namespace}/{manifest['metadata']['name']}"
                raise DeployError(f"applying {what}: {exc.status} {exc.reason}: {_message(exc)}") from None

    def _apply_secret(self, name: str) -> None:
        """The API token as the Secret the pods read (key ``token``); the value exists only in this process and
        in the cluster, never in a manifest written anywhere."""
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=name, labels={"app.kubernetes.io/managed-by": "mlplatform"}, namespace=self.namespace
            ),
            type="Opaque",
            data={manifests.TOKEN_KEY: base64.b64encode(self.token().encode()).decode()},
        )
        try:
            try:
                self.core.replace_namespaced_secret(name, self.namespace, body)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
                self.core.create_namespaced_secret(self.namespace, body)
        except client.ApiException as exc:
            # never the body: it holds the token
            raise DeployError(f"writing Secret {self.namespace}/{name}: {exc.status} {exc.reason}") from None

    def deploy(
        self,
        deployment: manifests.ModelDeployment,
        *,
        check: Callable[[str, str], None],
        timeout: float | None = None,
        watch_seconds: float | None = None,
        max_error_rate: float | None = None,
    ) -> Outcome:
        """Apply ``deployment``, wait until its pods are all ready and the old ones gone, send ``check(url,
        token)`` (it raises when the answer is wrong), then keep sending it for ``watch_seconds``; roll back to
        the previous revision when any of that fails. The defaults are the spec's ``deployment`` settings."""
        settings = deployment.settings
        timeout = settings.rollout_timeout_seconds if timeout is None else timeout
        watch_seconds = settings.watch_seconds if watch_seconds is None else watch_seconds
        max_error_rate = settings.max_error_rate if max_error_rate is None else max_error_rate
        previous = self.current(deployment.project)
        started = time.monotonic()
        self.apply(deployment)
        name = deployment.name
        outcome = dict(attempted_model_tag=deployment.model_tag, attempted_image=deployment.image, previous=previous)
        watched = failed = 0
        try:
            # each new pod asked on its own address as soon as it is ready, when this process is on the pod network
            # (no service_url given: it reaches the ClusterIP, so the pods too)
            token = self.token()
            pod_check = None if self.service_url else (lambda address: check(address, token))
            revision = self.wait_for_rollout(name, timeout=timeout, pod_check=pod_check)
            rollout_seconds = time.monotonic() - started
            url = self.url(name)
            try:
                check(url, token)
            except Exception as exc:  # noqa: BLE001 - any failure of the check is the reason, and is reported
                raise RolloutFailed(f"the smoke prediction through the Service {url} failed: {exc}") from None
            watched, failed, last_error = self.watch(url, check, seconds=watch_seconds)
            if watched and failed / watched > max_error_rate:
                raise RolloutFailed(
                    f"{failed} of {watched} requests through the Service {url} failed over the first "
                    f"{watch_seconds:g} s ({failed / watched:.1%} > max_error_rate {max_error_rate:.1%}); the last: "
                    f"{last_error}"
                )
        except RolloutFailed as failure:
            failed_at = time.monotonic()
            return self._roll_back_after(name, previous, failure, started, failed_at, watched, failed, outcome)
        self._forget_rollback_reason(name)
        self._mark(name, revision, None)  # the same template may have failed before; it works now
        serving = self._release(self.apps.read_namespaced_deployment(name, self.namespace))
        return Outcome(
            serving=serving,
            rollout_seconds=rollout_seconds,
            watched_requests=watched,
            failed_requests=failed,
            **outcome,
        )

    def _roll_back_after(
        self,
        name: str,
        previous: Release | None,
        failure: RolloutFailed,
        started: float,
        failed_at: float,
        watched: int,
        failed: int,
        outcome: dict,
    ) -> Outcome:
        failing = self.apps.read_namespaced_deployment(name, self.namespace)
        failed_revision = _revision(failing)
        if previous is None or previous.revision == failed_revision:
            # the first deploy, or the same template applied again: there is no earlier version to go back to
            raise RolloutFailed(
                f"{failure.reason}; nothing to roll back to (no earlier revision of {self.namespace}/{name} "
                "than the failing one)"
            ) from None
        self._mark(name, failed_revision, failure.reason)
        self.undo(name, to_revision=previous.revision, reason=failure.reason)
        try:
            self.wait_for_rollout(name, timeout=failing.spec.progress_deadline_seconds or 600)
        except RolloutFailed as again:
            raise DeployError(
                f"{failure.reason}; rolling back to revision {previous.revision} ({previous.model_tag}) failed too: "
                f"{again.reason}"
            ) from None
        rolled_back = time.monotonic()
        serving = self._release(self.apps.read_namespaced_deployment(name, self.namespace))
        return Outcome(
            serving=serving,
            rolled_back=True,
            reason=failure.reason,
            failed_revision=failed_revision,
            rollout_seconds=failed_at - started,
            rollback_seconds=rolled_back - failed_at,
            watched_requests=watched,
            failed_requests=failed,
            **outcome,
        )

    def watch(self, url: str, check: Callable[[str, str], None], *, seconds: float) -> tuple[int, int, str]:
        """``check`` sent through the Service every WATCH_INTERVAL_SECONDS for ``seconds``: how many were sent,
        how many failed, and the last failure."""
        token, sent, failed, last = self.token(), 0, 0, ""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sent += 1
            try:
                check(url, token)
            except Exception as exc:  # noqa: BLE001 - counted, and the last one reported
                failed, last = failed + 1, f"{type(exc).__name__}: {exc}"
            time.sleep(WATCH_INTERVAL_SECONDS)
        return sent, failed, last

    def wait_for_rollout(self, name: str, *, timeout: float, pod_check: Callable[[str], None] | None = None) -> int:
        """Wait until the Deployment's current revision has every replica updated, ready and available, and no
        pod of another revision is left, not even a terminating one (``kubectl rollout status`` stops waiting
        before they are gone); its revision. RolloutFailed when its progress
        deadline passes, ``timeout`` passes, a new pod waits for something that will not come (a crash loop,
        an image that cannot be pulled), or ``pod_check(pod_url)`` fails on a new pod as soon as it is ready:
        then the Service has sent it little traffic yet, and most pods still run the old version."""
        deadline, checked = time.monotonic() + timeout, set()
        while True:
            deployment = self.apps.read_namespaced_deployment(name, self.namespace)
            spec, status = deployment.spec, deployment.status
            revision = _revision(deployment)
            if (status.observed_generation or 0) >= deployment.metadata.generation:
                for condition in status.conditions or []:
                    if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
                        raise RolloutFailed(
                            f"revision {revision} was not ready within its progress deadline "
                            f"({spec.progress_deadline_seconds} s): {condition.message}{self._pod_problems(name)}"
                        )
                wanted = spec.replicas or 0
                if (
                    (status.updated_replicas or 0) == wanted
                    and (status.replicas or 0) == wanted
                    and (status.available_replicas or 0) == wanted
                    and (status.ready_replicas or 0) == wanted
                    # and no pod of another revision left, even terminating: one in its preStop sleep still
                    # answers requests the Service's proxies send it until they catch up, so the checks that
                    # follow would meet the old version
                    and not self._pods_of_other_revisions(name, revision)
                ):
                    return revision
                self._check_new_pods(name, revision, checked, pod_check)
            if time.monotonic() > deadline:
                raise RolloutFailed(
                    f"revision {revision} was not ready within {timeout:g} s ({status.ready_replicas or 0} of "
                    f"{spec.replicas} ready, {status.updated_replicas or 0} updated){self._pod_problems(name)}"
                )
            time.sleep(POLL_SECONDS)

    def _replica_sets(self, name: str) -> list[client.V1ReplicaSet]:
        """The Deployment's ReplicaSets, newest revision first."""
        deployment = self.apps.read_namespaced_deployment(name, self.namespace)
        selector = ",".join(f"{k}={v}" for k, v in deployment.spec.selector.match_labels.items())
        owned = [
            replica_set
            for replica_set in self.apps.list_namespaced_replica_set(self.namespace, label_selector=selector).items
            if any(owner.uid == deployment.metadata.uid for owner in replica_set.metadata.owner_references or [])
        ]
        return sorted(owned, key=_revision, reverse=True)

    def _pods_of(self, replica_set: client.V1ReplicaSet) -> list[client.V1Pod]:
        labels = replica_set.spec.selector.match_labels
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        return self.core.list_namespaced_pod(self.namespace, label_selector=selector).items

    def _pods_of_revision(self, name: str, revision: int) -> list[client.V1Pod]:
        """The pods of ``revision`` that are not going away (one of an earlier attempt at the same template may
        still be terminating)."""
        return [
            pod
            for replica_set in self._replica_sets(name)
            if _revision(replica_set) == revision
            for pod in self._pods_of(replica_set)
            if not pod.metadata.deletion_timestamp
        ]

    def _pods_of_other_revisions(self, name: str, revision: int) -> list[client.V1Pod]:
        return [
            pod
            for replica_set in self._replica_sets(name)
            if _revision(replica_set) != revision
            for pod in self._pods_of(replica_set)
        ]

    def _check_new_pods(self, name: str, revision: int, checked: set[str], pod_check) -> None:
        """RolloutFailed when a new pod waits for something that will not come, or when ``pod_check`` fails on a
        new pod that just got ready (each pod checked once, on its own address)."""
        hopeless = []
        for pod in self._pods_of_revision(name, revision):
            statuses = pod.status.container_statuses or []
            for container in statuses:
                waiting = container.state.waiting if container.state else None
                if waiting is not None and waiting.reason in HOPELESS:
                    hopeless.append(f"pod {pod.metadata.name}: {waiting.reason}: {waiting.message or ''}".strip())
            ready = bool(statuses) and all(container.ready for container in statuses)
            if pod_check is None or not ready or pod.metadata.name in checked or not pod.status.pod_ip:
                continue
            checked.add(pod.metadata.name)
            address = f"http://{pod.status.pod_ip}:{manifests.PORT}"
            try:
                pod_check(address)
            except Exception as exc:  # noqa: BLE001 - any failure of the check is the reason, and is reported
                raise RolloutFailed(
                    f"pod {pod.metadata.name} of revision {revision} failed the smoke prediction as soon as it was "
                    f"ready ({address}): {exc}"
                ) from None
        if hopeless:
            raise RolloutFailed(f"revision {revision} cannot become ready: {'; '.join(hopeless)}")

    def _pod_problems(self, name: str) -> str:
        """Why the newest revision's pods are not ready, as far as their statuses say."""
        replica_sets = self._replica_sets(name)
        if not replica_sets:
            return ""
        problems = []
        for pod in self._pods_of(replica_sets[0]):
            for container in pod.status.container_statuses or []:
                state = container.state
                detail = (state.waiting and state.waiting.reason) or (state.terminated and state.terminated.reason)
                ready = "ready" if container.ready else "not ready"
                problems.append(
                    f"{pod.metadata.name} {ready}, {container.restart_count} restarts, {detail or 'running'}"
                )
        return f"; pods: {', '.join(problems)}" if problems else ""

    # -- rolling back ------------------------------------------------------------------------------------------

    def undo(self, name: str, *, to_revision: int | None = None, reason: str) -> int:
        """Put the pod template of ``to_revision`` back into the Deployment, as ``kubectl rollout undo`` does;
        the revision rolled back to. By default the newest revision before the current one that was not itself
        rolled back as failed (``kubectl rollout undo`` would pick a failed one)."""
        deployment = self.apps.read_namespaced_deployment(name, self.namespace)
        current = _revision(deployment)
        earlier = [
            rs
            for rs in self._replica_sets(name)
            if (_revision(rs) == to_revision)
            or (to_revision is None and _revision(rs) < current and FAILED not in (rs.metadata.annotations or {}))
        ]
        if not earlier:
            wanted = f"revision {to_revision}" if to_revision is not None else f"a revision before {current}"
            raise DeployError(f"Deployment {self.namespace}/{name} has no ReplicaSet of {wanted} to roll back to")
        template = as_dict(earlier[0].spec.template)
        template["metadata"].get("labels", {}).pop("pod-template-hash", None)
        annotations = template["metadata"].get("annotations", {})
        patch = [
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "add", "path": "/metadata/annotations/" + _pointer(ROLLBACK_REASON), "value": reason},
        ]
        patch += [
            {"op": "add", "path": "/metadata/annotations/" + _pointer(key), "value": annotations[key]}
            for key in (MODEL_TAG, IMAGE)
            if key in annotations
        ]
        try:
            self.apps.patch_namespaced_deployment(name, self.namespace, patch)
        except client.ApiException as exc:
            what = f"rolling back {self.namespace}/{name}"
            raise DeployError(f"{what}: {exc.status} {exc.reason}: {_message(exc)}") from None
        return _revision(earlier[0])

    def _mark(self, name: str, revision: int, reason: str | None) -> None:
        """Mark the ReplicaSet of ``revision`` as a failed version (``reason``), or clear the mark (None)."""
        for replica_set in self._replica_sets(name):
            if _revision(replica_set) == revision:
                patch = {"metadata": {"annotations": {FAILED: reason}}}
                self.apps.patch_namespaced_replica_set(
                    replica_set.metadata.name, self.namespace, patch, _content_type="application/merge-patch+json"
                )

    def rollback(self, project: str, *, reason: str, timeout: float = 600) -> Release:
        """``kubectl rollout undo`` of the project's Deployment, waited for: what serves afterwards."""
        current = self.current(project)
        if current is None:
            raise DeployError(f"nothing is deployed for {project!r} in namespace {self.namespace}")
        self.undo(current.name, reason=reason)
        self.wait_for_rollout(current.name, timeout=timeout)
        return self._release(self.apps.read_namespaced_deployment(current.name, self.namespace))

    def _forget_rollback_reason(self, name: str) -> None:
        patch = {"metadata": {"annotations": {ROLLBACK_REASON: None}}}
        self.apps.patch_namespaced_deployment(name, self.namespace, patch, _content_type="application/merge-patch+json")


def _revision(owner: client.V1ReplicaSet | client.V1Deployment) -> int:
    """A Deployment's current revision, or the revision a ReplicaSet's pod template is."""
    return int((owner.metadata.annotations or {}).get(REVISION, 0))


def _pointer(key: str) -> str:
    """An annotation key as a JSON pointer segment ('/' is '~1')."""
    return key.replace("~", "~0").replace("/", "~1")


def _message(exc: client.ApiException) -> str:
    import json

    try:
        return json.loads(exc.body).get("message", "")
    except (TypeError, ValueError):
        return str(exc.body)[:500]


def connect(kubeconfig: str | None, context: str | None) -> client.ApiClient:
    """A client for the cluster (``kubernetes_api.api_client``), failing now, naming the server, when it does not
    answer."""
    api = kubernetes_api.api_client(kubeconfig, context)
    try:
        client.VersionApi(api).get_code()
    except (client.ApiException, urllib3.exceptions.HTTPError) as exc:
        raise kubernetes_api.ClusterError(f"the cluster at {api.configuration.host} did not answer: {exc}") from None
    return api
