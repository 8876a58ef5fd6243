"""Where the champion goes after the registry: a deployment target that serves it, an image registry.

Each resource hands out an adapter by the interface below, whose one kind today is local: ``bentoml serve`` on
this machine (``local_server``), the Docker engine DOCKER_HOST names (``docker``). Another kind (a Kubernetes
Deployment, a remote builder) is another class with the same methods, chosen by the resource's configuration,
so the assets that call them do not change."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import dagster as dg

from mlplatform.resources import docker
from mlplatform.resources.local_server import LocalDeployment, RunningServer
from mlplatform.settings import API_TOKEN, Settings


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


class ImageRegistry(dg.ConfigurableResource):
    """The registry images are pushed to (``host:port``), built by the Docker engine DOCKER_HOST names."""

    registry: str
    bentoml_home: str

    def builder(self) -> ImageBuilder:
        return docker.DockerEngine(self.registry, bentoml_home=self.bentoml_home)

    def push(self, bento: str) -> docker.Image:
        return self.builder().push(bento)
