"""Where the champion goes after the registry: a deployment target that serves it, an image registry.

Each resource hands out an adapter by the interfaces below: ``bentoml serve`` on this machine
(``local_server``), a Kubernetes Deployment of the champion's image (``kubernetes_deploy``), the Docker engine
DOCKER_HOST names (``docker``). Another kind (a remote builder, another orchestrator) is another class with the
same methods, chosen by the resource's configuration, so the assets that call them do not change."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import dagster as dg

from mlplatform.resources import docker
from mlplatform.resources.local_server import LocalDeployment, RunningServer
from mlplatform.settings import API_TOKEN, Settings

if TYPE_CHECKING:  # the kubernetes client is imported only by what deploys to a cluster
    from mlplatform.lib.deployment.kubernetes import ModelDeployment
    from mlplatform.resources import kubernetes_deploy


class DeploymentTarget(Protocol):
    """Serves one bento at a time at ``url``, in place of the one before; requests need ``token()``."""

    @property
    def url(self) -> str: ...

    @property
    def token_path(self) -> Path | None: ...

    def token(self) -> str: ...

    def current(self) -> RunningServer | None: ...

    def deploy(
        self, bento: str, model_tag: str, *, check: Callable[[str, str], None] | None = None, timeout: float = 120
    ) -> RunningServer: ...

    def stop(self) -> RunningServer | None: ...


class ClusterTarget(Protocol):
    """Serves an image on a cluster, rolled out in place of the one before and rolled back when it fails."""

    namespace: str

    def token(self) -> str: ...

    def current(self, project: str) -> kubernetes_deploy.Release | None: ...

    def deploy(
        self, deployment: ModelDeployment, *, check: Callable[[str, str], None]
    ) -> kubernetes_deploy.Outcome: ...

    def rollback(self, project: str, *, reason: str) -> kubernetes_deploy.Release: ...


class ImageBuilder(Protocol):
    """Builds a bento's container image and pushes it to a registry."""

    def push(self, bento: str) -> docker.Image: ...


class LocalServing(dg.ConfigurableResource):
    """The champion served on this machine at ``host:port``; the server's state, token and logs in ``folder``."""

    folder: str
    port: int
    bentoml_home: str
    prediction_log: str
    host: str = "127.0.0.1"
    api_token: str | None = None  # None: a token generated into ``folder``

    @classmethod
    def for_settings(cls, settings: Settings) -> LocalServing:
        return cls(
            folder=str(settings.deployment_home),
            port=settings.serve_port,
            bentoml_home=str(settings.bentoml_home),
            prediction_log=str(settings.prediction_log),
            # an EnvVar, not the value: Dagster resolves it at run time and never shows it in the UI
            api_token=dg.EnvVar(API_TOKEN) if settings.api_token else None,
        )

    def deployment(self) -> DeploymentTarget:
        return LocalDeployment(
            Path(self.folder),
            port=self.port,
            host=self.host,
            bentoml_home=Path(self.bentoml_home),
            prediction_log=Path(self.prediction_log),
            api_token=self.api_token,
        )


class KubernetesServing(dg.ConfigurableResource):
    """The champion as a Deployment in ``namespace`` of the cluster ``kubeconfig`` and ``context`` name (else
    $KUBECONFIG, ~/.kube/config, or the pod's own ServiceAccount), its API token from MLPLATFORM_API_TOKEN."""

    namespace: str = "default"
    kubeconfig: str | None = None
    context: str | None = None
    service_url: str | None = None  # where this process reaches the Service; None: its ClusterIP
    api_token: str | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> KubernetesServing:
        return cls(
            namespace=settings.k8s_namespace,
            kubeconfig=settings.kubeconfig,
            context=settings.kube_context,
            service_url=settings.k8s_service_url,
            # an EnvVar, not the value: Dagster resolves it at run time and never shows it in the UI
            api_token=dg.EnvVar(API_TOKEN) if settings.api_token else None,
        )

    def target(self) -> ClusterTarget:
        from mlplatform.resources import kubernetes_deploy

        api = kubernetes_deploy.connect(self.kubeconfig, self.context)
        return kubernetes_deploy.KubernetesDeployer(
            api, self.namespace, token=self.api_token, service_url=self.service_url
        )


class ImageRegistry(dg.ConfigurableResource):
    """The registry images are pushed to (``host:port``), built by the Docker engine DOCKER_HOST names."""

    registry: str
    bentoml_home: str

    def builder(self) -> ImageBuilder:
        return docker.DockerEngine(self.registry, bentoml_home=self.bentoml_home)

    def push(self, bento: str) -> docker.Image:
        return self.builder().push(bento)
