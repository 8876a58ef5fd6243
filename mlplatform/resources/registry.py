"""The model registry as a resource: BentoML's model store and the champion pointer (``mlplatform.lib.registry``)."""

from __future__ import annotations

import dagster as dg

from mlplatform.lib.registry.registry import Registry
from mlplatform.resources.model_store import BentoMLStore


class ModelRegistry(dg.ConfigurableResource):
    """Where trained models are stored (``bentoml_home``) and where the champion pointer lives (``pointer_root``,
    a folder or s3://bucket/prefix)."""

    bentoml_home: str
    pointer_root: str

    def for_project(self, project: str) -> Registry:
        return Registry(BentoMLStore(self.bentoml_home), self.pointer_root, project)
