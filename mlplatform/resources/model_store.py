"""The model store kinds behind ``mlplatform.lib.registry.registry.ModelStore``: ``BentoMLStore``, BentoML's
local model store under one BentoML home (locally, the store itself), and ``ExportedModelStore``, every version
exported as a BentoML archive to object storage, with the local BentoML home as its cache (in the cloud, so any
pod on any machine can load any model). ``ModelRegistry`` picks one by the settings' values.

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
from datetime import datetime
from pathlib import Path

from upath import UPath

from mlplatform.lib.registry.registry import NewVersion, NotStored, StoredVersion
from mlplatform.lib.storage import read_json, write_json
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


class ExportedModelStore:
    """Every model version in object storage (or any fsspec folder) under ``root``: ``<name>/<version>.tar.gz``,
    the version as BentoML exports it (``bentoml.models.export_model``), and ``<name>/<version>.json``, its tag,
    labels, metadata and creation time, written after the archive: a version is listed only once it is whole.

    ``cache`` is this process's BentoML home: a version is created there and exported; reading one imports it
    there first when the cache lacks it (``bentoml.models.import_model``), so the registry reads its files
    locally and ``bentoml build`` in this process's environment finds it. BentoML reads and writes the archives
    through fsspec, so S3 writes carry the encryption ``resources.object_storage`` configured."""

    def __init__(self, root: str, cache: BentoMLStore) -> None:
        self.root = root.rstrip("/")
        self.cache = cache

    @property
    def where(self) -> str:
        return f"the store at {self.root}"

    def _files(self, tag: str) -> tuple[UPath, UPath]:
        name, version = tag.split(":", 1)
        folder = UPath(self.root).joinpath(name)
        return folder / f"{version}.tar.gz", folder / f"{version}.json"

    @contextmanager
    def create(self, name: str, *, labels: dict[str, str], metadata: dict) -> Iterator[NewVersion]:
        with self.cache.create(name, labels=labels, metadata=metadata) as new:
            yield new
        stored = self.cache.get(new.tag)
        archive, description = self._files(stored.tag)
        _bentoml_at(self.cache.bentoml_home).models.export_model(stored.tag, str(archive), output_format="gz")
        write_json(
            description,
            {
                "tag": stored.tag,
                "labels": stored.labels,
                "metadata": stored.metadata,
                "created": stored.created.isoformat(),
            },
        )

    def get(self, tag: str) -> StoredVersion:
        archive, description = self._files(tag)
        description.fs.invalidate_cache(description.path)  # s3fs's cached listings miss other processes' versions
        try:
            known = read_json(description)
        except FileNotFoundError as exc:
            raise NotStored(tag) from exc
        try:
            cached = self.cache.get(tag)
        except NotStored:
            cached = self._imported(tag, archive)
        return _version(known, cached.path)

    def _imported(self, tag: str, archive: UPath) -> StoredVersion:
        bentoml = _bentoml_at(self.cache.bentoml_home)
        from bentoml.exceptions import BentoMLException

        try:
            bentoml.models.import_model(str(archive))
        except BentoMLException as error:
            try:  # another thread of this process imported it first ("already exists")
                return self.cache.get(tag)
            except NotStored:
                raise error from None
        return self.cache.get(tag)

    def list(self, name: str) -> list[StoredVersion]:
        """Every version the store holds, from the descriptions alone: each ``path`` is where ``get`` puts its
        files in the cache, which only ``get`` fills."""
        folder = UPath(self.root).joinpath(name)
        folder.fs.invalidate_cache(folder.path)  # s3fs's cached listings miss other processes' versions
        if not folder.exists():
            return []
        versions = []
        for description in sorted(folder.glob("*.json")):
            known = read_json(description)
            versions.append(_version(known, self.cache.bentoml_home / "models" / name / known["tag"].split(":")[1]))
        return versions


def _version(known: dict, path: Path) -> StoredVersion:
    """A version as its description in the store tells it, with its files at ``path`` (in the local cache)."""
    return StoredVersion(
        tag=known["tag"],
        labels=dict(known["labels"]),
        metadata=dict(known["metadata"]),
        created=datetime.fromisoformat(known["created"]),
        path=path,
    )
