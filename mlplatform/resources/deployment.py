"""Where the champion goes after the registry: a local ``bentoml serve`` process, an image registry."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from mlplatform.lib.serving import images
from mlplatform.lib.serving.deployment import LocalDeployment
from mlplatform.settings import API_TOKEN, Settings


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

    def deployment(self) -> LocalDeployment:
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

    def push(self, bento: str) -> images.Image:
        return images.containerize(bento, self.registry, bentoml_home=self.bentoml_home)
