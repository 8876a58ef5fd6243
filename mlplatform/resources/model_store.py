"""The model store kind the registry uses today: BentoML's local model store under one BentoML home.

``mlplatform.lib.registry.registry.ModelStore`` is the interface; a store elsewhere (BentoML's models in S3,
say) is another class with the same three methods, handed to ``Registry`` in place of this one.

One BentoML home per process. BentoML's public functions (``bentoml.models.create/get/list``) use the one home
BentoML resolves at its first use in a process, from BENTOML_HOME (``~/bentoml`` when unset), and keep it for the
life of the process. So the first store used in a process commits the process to its home (setting BENTOML_HOME
when nothing set it), and a store naming another home later is refused rather than let it read or write the
committed one. Settings.bentoml_home honours BENTOML_HOME, so the stores an entry point opens agree with it, and
with the ``bentoml`` processes (build, serve) and step processes that inherit the environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlplatform.lib.registry.registry import NewVersion, NotStored, StoredVersion
from mlplatform.settings import bentoml_home_named_by


class BentoMLHomeError(RuntimeError):
    """A store names a BentoML home other than the one this process's BentoML uses; the message names both."""


# The home this process's BentoML uses, known from the first store used here; BentoML never changes it.
_process_home: Path | None = None


def _bentoml_at(home: Path):
    """The ``bentoml`` module, once this process's BentoML home is known to be ``home``."""
    global _process_home
    if _process_home is None:
        # BentoML's own variable, read here as BentoML reads it: it is the process's state, not a setting.
        named = os.environ.get("BENTOML_HOME")
        if named:
            _process_home = bentoml_home_named_by(named)
        else:
            os.environ["BENTOML_HOME"] = str(home)  # before BentoML's first use: it resolves its home from this
            _process_home = home
    if home != _process_home:
        raise _another_home(home, _process_home)
    # BentoML reports usage over the network unless told not to; this machine and most clusters have no route out.
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    import bentoml

    return bentoml


def _another_home(wanted: Path, used: Path) -> BentoMLHomeError:
    return BentoMLHomeError(
        f"the model store at {wanted} cannot be opened: this process's BentoML uses the home {used}, and BentoML "
        f"keeps one home per process (read from BENTOML_HOME at its first use). Open {wanted} in a process of its "
        f"own, started with BENTOML_HOME={wanted}."
    )


class BentoMLStore:
    """BentoML's model store under ``bentoml_home`` (its ``models`` folder), through BentoML's public API: the
    home must be this process's BentoML home (see the module's docstring)."""

    def __init__(self, bentoml_home: str | Path) -> None:
        self.bentoml_home = Path(bentoml_home).resolve()

    @property
    def where(self) -> str:
        return f"the store at {self.bentoml_home}"

    @contextmanager
    def create(self, name: str, *, labels: dict[str, str], metadata: dict) -> Iterator[NewVersion]:
        with _bentoml_at(self.bentoml_home).models.create(name, labels=labels, metadata=metadata) as stored:
            yield NewVersion(tag=str(stored.tag), path=Path(stored.path))

    def get(self, tag: str) -> StoredVersion:
        bentoml = _bentoml_at(self.bentoml_home)
        from bentoml.exceptions import NotFound

        try:
            return self._described(bentoml.models.get(tag))
        except NotFound as exc:
            raise NotStored(tag) from exc

    def list(self, name: str) -> list[StoredVersion]:
        bentoml = _bentoml_at(self.bentoml_home)
        from bentoml.exceptions import NotFound

        try:
            return [self._described(m) for m in bentoml.models.list(name)]
        except NotFound:
            return []

    def _described(self, stored) -> StoredVersion:
        path = Path(stored.path)  # <home>/models/<name>/<version>
        if not path.resolve().is_relative_to(self.bentoml_home / "models"):
            # BentoML was used in this process, with another home, before any store was: it kept that home.
            raise _another_home(self.bentoml_home, path.resolve().parents[2])
        return StoredVersion(
            tag=str(stored.tag),
            labels=dict(stored.info.labels),
            metadata=dict(stored.info.metadata),
            created=stored.creation_time,
            path=path,
        )
