"""Where the champion goes after the registry: a local ``bentoml serve`` process, an image registry."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from mlplatform.lib import images
from mlplatform.lib.deployment import LocalDeployment
from mlplatform.settings import Settings


class LocalServing(dg.ConfigurableResource):
    """The champion served on this machine at ``host:port``; the server's state, token and logs in ``folder``."""

    folder: str
    port: int
    bentoml_home: str
    prediction_log: str
    host: str = "127.0.0.1"

    @classmethod
    def for_settings(cls, settings: Settings) -> LocalServing:
        return cls(
            folder=str(settings.deployment_home),
            port=settings.serve_port,
            bentoml_home=str(settings.bentoml_home),
            prediction_log=str(settings.prediction_log),
        )

    def deployment(self) -> LocalDeployment:
        return LocalDeployment(
            Path(self.folder),
            port=self.port,
            host=self.host,
            bentoml_home=Path(self.bentoml_home),
            prediction_log=Path(self.prediction_log),
        )


class ImageRegistry(dg.ConfigurableResource):
    """The registry images are pushed to (``host:port``), built by the Docker engine DOCKER_HOST names."""

    registry: str
    bentoml_home: str

    def push(self, bento: str) -> images.Image:
        return images.containerize(bento, self.registry, bentoml_home=self.bentoml_home)
