"""One module per outside system: the spec file, the artifact storage, how asset values are stored, and the
model registry, and where the champion is deployed."""

from mlplatform.resources.artifacts import ArtifactIOManager, ArtifactStore
from mlplatform.resources.compute import Compute
from mlplatform.resources.deployment import ImageRegistry, LocalServing
from mlplatform.resources.project import ProjectSpecResource
from mlplatform.resources.registry import ModelRegistry

__all__ = [
    "ArtifactIOManager",
    "ArtifactStore",
    "Compute",
    "ImageRegistry",
    "LocalServing",
    "ModelRegistry",
    "ProjectSpecResource",
]
