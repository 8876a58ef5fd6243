"""The model store kind the registry uses today: BentoML's local model store under one BentoML home.

``mlplatform.lib.registry.registry.ModelStore`` is the interface; a store elsewhere (BentoML's models in S3,
say) is another class with the same three methods, handed to ``Registry`` in place of this one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlplatform.lib.registry.registry import NewVersion, NotStored, StoredVersion


def _bentoml():
    # BentoML reports usage over the network unless told not to; this machine and most clusters have no route out.
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    import bentoml

    return bentoml


class BentoMLStore:
    """BentoML's model store under ``bentoml_home`` (its ``models`` folder), whichever home this process's
    BentoML would otherwise use: the registry, the tests and the benches address a home each."""

    def __init__(self, bentoml_home: str | Path) -> None:
        self.bentoml_home = Path(bentoml_home)

    @property
    def where(self) -> str:
        return f"the store at {self.bentoml_home}"

    def _store(self):
        _bentoml()
        # Private on purpose: BentoML 1.4 has no public way to open the model store of a given home. Its public
        # functions (bentoml.models.create/get/list) use the one BENTOML_HOME named when BentoML was first used
        # in this process, unless given another store as the keyword _model_store, and only this class builds
        # one. The registry, the tests and the benches address several homes in one process. Going public-only
        # means one BentoML home per process, set from Settings at every entry point (open in issue #11).
        from bentoml._internal.models.model import ModelStore

        return ModelStore(self.bentoml_home / "models")

    @contextmanager
    def create(self, name: str, *, labels: dict[str, str], metadata: dict) -> Iterator[NewVersion]:
        with _bentoml().models.create(name, labels=labels, metadata=metadata, _model_store=self._store()) as stored:
            yield NewVersion(tag=str(stored.tag), path=Path(stored.path))

    def get(self, tag: str) -> StoredVersion:
        from bentoml.exceptions import NotFound

        try:
            return _described(self._store().get(tag))
        except NotFound as exc:
            raise NotStored(tag) from exc

    def list(self, name: str) -> list[StoredVersion]:
        bentoml = _bentoml()
        from bentoml.exceptions import NotFound

        try:
            return [_described(m) for m in bentoml.models.list(name, _model_store=self._store())]
        except NotFound:
            return []


def _described(stored) -> StoredVersion:
    return StoredVersion(
        tag=str(stored.tag),
        labels=dict(stored.info.labels),
        metadata=dict(stored.info.metadata),
        created=stored.creation_time,
        path=Path(stored.path),
    )
