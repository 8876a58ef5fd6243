"""One module per outside system: the spec file, the artifact storage, how asset values are stored, and the
model registry."""

from mlplatform.resources.artifacts import ArtifactIOManager, ArtifactStore
from mlplatform.resources.project import ProjectSpecResource
from mlplatform.resources.registry import ModelRegistry

__all__ = ["ArtifactIOManager", "ArtifactStore", "ModelRegistry", "ProjectSpecResource"]
