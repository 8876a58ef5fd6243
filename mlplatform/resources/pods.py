"""Pods of their own for candidate searches that ask for one (``training.candidates.<name>.resources.pod``),
launched through Dagster Pipes: ``PipesK8sClient`` creates the pod, streams its logs and Pipes messages into the
step's events, waits for it, and deletes it. Kubernetes is reached as ``PipesK8sClient`` reaches it: in-cluster
config inside a pod (a run worker on Kubernetes), else the kubeconfig the settings name (``KUBECONFIG``, passed on
explicitly: the ``kubernetes`` package reads that variable once, when first imported, so a later change of it
would otherwise go unseen)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg
from dagster_k8s import PipesK8sClient

from mlplatform.lib.spec import CandidatePod
from mlplatform.lib.training import pods
from mlplatform.settings import Settings


class PodError(RuntimeError):
    """A candidate's pod that could not be launched, or ended without reporting a result; names the candidate."""


class CandidatePods(dg.ConfigurableResource):
    """``image``: the platform's image, for pods whose spec names none; ``namespace``: where the pods go (None:
    the run's own namespace in a cluster, else ``default``); ``environment``: what each pod is given of the
    launching process's environment (where object storage is, how to encrypt; never a credential)."""

    image: str | None = None
    namespace: str | None = None
    environment: dict[str, str] = {}
    kubeconfig: str | None = None  # None: in a pod, its ServiceAccount; elsewhere ~/.kube/config
    kube_context: str | None = None
    poll_seconds: float = 2.0  # between looks at the pod's state

    @classmethod
    def for_settings(cls, settings: Settings) -> CandidatePods:
        return cls(
            image=settings.pod_image,
            namespace=settings.pod_namespace,
            environment=settings.pod_environment,
            kubeconfig=settings.kubeconfig,
            kube_context=settings.kube_context,
        )

    def run(
        self, context: dg.OpExecutionContext, *, project: str, candidate: str, pod: CandidatePod, extras: Mapping
    ) -> Sequence[object]:
        """Run ``candidate``'s search in its pod; the custom messages it reported through Pipes, in order."""
        image = pod.image or self.image
        if not image:
            raise PodError(
                f"training.candidates.{candidate}.resources.pod names no image, and neither MLPLATFORM_POD_IMAGE nor "
                "DAGSTER_CURRENT_IMAGE (set by K8sRunLauncher) is set: name the platform's image in one of them"
            )
        client = PipesK8sClient(
            env=self.environment,
            poll_interval=self.poll_seconds,
            kubeconfig_file=self.kubeconfig,
            kube_context=self.kube_context,
        )
        completed = client.run(
            context=context,
            image=image,
            command=list(pods.COMMAND),
            namespace=self.namespace,
            base_pod_meta=pods.pod_metadata(project, candidate),
            base_pod_spec=pods.pod_spec(pod),
            extras=dict(extras),
            pod_wait_timeout=pod.timeout_minutes * 60,
        )
        return completed.get_custom_messages()
