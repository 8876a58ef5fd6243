"""One module per outside system: the spec file, the artifact storage, and how asset values are stored."""

from mlplatform.resources.artifacts import ArtifactIOManager, ArtifactStore
from mlplatform.resources.project import ProjectSpecResource

__all__ = ["ArtifactIOManager", "ArtifactStore", "ProjectSpecResource"]
