"""The model registry as a resource: a model store and the champion pointer (``mlplatform.lib.registry``)."""

from __future__ import annotations

import dagster as dg

from mlplatform.lib.registry.registry import Registry
from mlplatform.resources.model_store import BentoMLStore, ExportedModelStore
from mlplatform.settings import Settings


class ModelRegistry(dg.ConfigurableResource):
    """Where trained models are stored and where the champion pointer lives (``pointer_root``, a folder or
    s3://bucket/prefix). Models live in BentoML's store under ``bentoml_home``, or, when ``store_root`` names a
    place (s3://bucket/prefix/models), there as exported archives with ``bentoml_home`` as the local cache."""

    bentoml_home: str
    pointer_root: str
    store_root: str | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> ModelRegistry:
        return cls(
            bentoml_home=str(settings.bentoml_home),
            pointer_root=settings.artifact_root,
            store_root=settings.model_store_root,
        )

    def for_project(self, project: str) -> Registry:
        local = BentoMLStore(self.bentoml_home)
        store = ExportedModelStore(self.store_root, cache=local) if self.store_root else local
        return Registry(store, self.pointer_root, project)
