"""The outside systems, as Dagster resources: the spec file, the artifact storage, how asset values are stored,
the model registry, the cores steps share, and where the champion is deployed. The adapters the deployment
resources hand out live here too, Dagster-free: ``bentos`` (``bentoml build`` and ``bentoml serve`` processes),
``local_server`` (the local deployment target), ``docker`` (images built and pushed), ``kubernetes_api`` (which
API versions a cluster serves) and ``kubernetes_deploy`` (the champion rolled out, and back, on a cluster)."""

from mlplatform.resources.artifacts import ArtifactIOManager, ArtifactStore
from mlplatform.resources.compute import Compute
from mlplatform.resources.deployment import ImageRegistry, KubernetesServing, LocalServing
from mlplatform.resources.project import ProjectSpecResource
from mlplatform.resources.registry import ModelRegistry

__all__ = [
    "ArtifactIOManager",
    "ArtifactStore",
    "Compute",
    "ImageRegistry",
    "KubernetesServing",
    "LocalServing",
    "ModelRegistry",
    "ProjectSpecResource",
]
