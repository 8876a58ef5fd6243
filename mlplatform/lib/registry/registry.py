"""The model registry: every trained model in a model store (BentoML's, today), and a champion pointer beside it.

A model version is a BentoML model (``<project>:<version>``) holding the shipped scikit-learn pipeline
(``model.joblib``: feature pipeline + estimator), its input schema (``schema.json``), the ids of the rows it
was trained on (``training_rows.npy``, so the promotion gate can leave them out of a comparison) and a
reference sample of its training inputs with its predictions on them (``reference.parquet``, what the drift
monitor compares served traffic with: ``mlplatform.lib.monitoring.reference``), labelled with where it came
from: data version, code version, spec hash, holdout metrics, Dagster run id and training time.

The store is an interface (``ModelStore``): the registry never names BentoML; its one kind today,
``mlplatform.resources.model_store.BentoMLStore``, is handed in by whoever opens the registry.

The champion is a pointer, not a copy: ``registry/<project>/champion.json`` under the artifact root names
the tag that serves, and ``history.jsonl`` records every change of champion with who did it and why. The
pointer moves by a conditional write (``lib.storage.write_if_unchanged``: a conditional PUT in S3), so of two
promotions that read the same champion only one moves it; the other fails with ChampionMoved and changes
nothing. The history line follows the pointer; a promotion that stopped between the two left its whole record
in the pointer, and the history (read or written next) includes it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Literal, Protocol

import joblib
import numpy as np
import pandas as pd
from upath import UPath

from mlplatform.lib.features.features import RowIds
from mlplatform.lib.spec import ProjectSpec
from mlplatform.lib.storage import WriteConflict, read_snapshot, write_if_unchanged, write_parquet
from mlplatform.lib.training.training import TrainedModel

MODEL_FILE = "model.joblib"
SCHEMA_FILE = "schema.json"
TRAINING_ROWS_FILE = "training_rows.npy"
REFERENCE_FILE = "reference.parquet"
PromotionKind = Literal["gate", "manual", "rollback"]


class RegistryError(LookupError):
    """A tag the store does not hold, or a pointer that cannot move; the message names the tag."""


class ChampionMoved(RegistryError):
    """Another promotion moved the champion while this one was deciding; this one changed nothing."""


class NotStored(LookupError):
    """Raised by a ModelStore for a tag it does not hold (the registry says which and what it holds)."""


@dataclass(frozen=True)
class StoredVersion:
    """One model version as a store keeps it: files in ``path``, labels and metadata beside them."""

    tag: str
    labels: dict[str, str]
    metadata: dict
    created: datetime
    path: Path


@dataclass(frozen=True)
class NewVersion:
    """A version being written: its files go in ``path`` until the store's ``create`` context exits."""

    tag: str
    path: Path


class ModelStore(Protocol):
    """Where model versions live: the registry's one dependency on an outside system."""

    @property
    def where(self) -> str: ...  # for messages: "the store at /home/.../bentoml"

    def create(self, name: str, *, labels: dict[str, str], metadata: dict) -> AbstractContextManager[NewVersion]: ...

    def get(self, tag: str) -> StoredVersion: ...  # raises NotStored

    def list(self, name: str) -> list[StoredVersion]: ...


@dataclass(frozen=True)
class ModelVersion:
    """What the registry knows about one stored model, without loading it."""

    tag: str
    labels: dict[str, str]
    metrics: dict[str, float]
    created: str

    @property
    def data_version(self) -> str:
        return self.labels["data_version"]


@dataclass(frozen=True)
class Promotion:
    """One change of champion: to which tag, from which, how, by whom and why."""

    tag: str
    previous: str | None
    kind: PromotionKind
    by: str
    reason: str
    at: str
    run_id: str = ""
    evidence: dict = field(default_factory=dict)
    id: str = ""  # unique to this change of champion (empty in records written before ids were kept)


@dataclass(frozen=True)
class LoadedModel:
    tag: str
    model: TrainedModel
    schema: dict
    labels: dict[str, str]


def _described(stored: StoredVersion) -> ModelVersion:
    return ModelVersion(
        tag=stored.tag,
        labels=dict(stored.labels),
        metrics=dict(stored.metadata.get("metrics", {})),
        created=stored.created.isoformat(timespec="seconds"),
    )


def check_pinned(tag: str, error: type[Exception] = RegistryError) -> str:
    """A tag that names a version: nothing in the platform ever follows ``:latest``."""
    if ":" not in tag or tag.endswith(":latest"):
        raise error(f"model tag {tag!r}: name a version (<project>:<version>), never 'latest'")
    return tag


def read_version(model_dir: str | Path) -> tuple[TrainedModel, dict]:
    """The model and input schema stored in a version's folder (in a model store, or inside a bento)."""
    folder = Path(model_dir)
    return joblib.load(folder / MODEL_FILE), json.loads((folder / SCHEMA_FILE).read_text())


def spec_hash(spec: ProjectSpec) -> str:
    """A hash of the spec's meaning (its parsed values, not its comments or layout). Where a search runs is left
    out: the pods of every candidate search (``training.resources``) and a candidate's own pod
    (``training.candidates.<name>.resources``) change where the search runs, not the model it makes, and specs
    written before either existed keep their hash."""
    meaning = spec.model_dump(
        mode="json", exclude={"training": {"resources": True, "candidates": {"__all__": {"resources"}}}}
    )
    canonical = json.dumps(meaning, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@cache
def code_version() -> str:
    """The git commit of the checkout when there is one (``+dirty`` with local changes), else a hash of the
    installed mlplatform sources: either way, the code that trained a model can be found again."""
    package = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(package), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        return f"git:{commit[:12]}{'+dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return f"src:{code_hash()}"


@cache
def code_hash() -> str:
    """A hash of the mlplatform package's sources: what decides whether the same data and spec would train the
    same model again (a commit that changes only docs or tests does not; an edit not yet committed does)."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:12]


def lineage_labels(
    *, spec: ProjectSpec, data_version: str, run_id: str, metrics: dict[str, float], model: TrainedModel
) -> dict[str, str]:
    """The labels every stored model carries (BentoML labels are strings)."""
    return {
        "project": spec.name,
        "task": spec.problem.task,
        "target": spec.problem.target,
        "estimator": model.estimator_name,
        "data_version": data_version,
        "code_version": code_version(),
        "code_hash": code_hash(),
        "spec_hash": spec_hash(spec),
        "dagster_run_id": run_id,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "primary_metric": spec.problem.primary_metric,
        **{f"metric.{name}": f"{value:.6g}" for name, value in metrics.items()},
    }


class Registry:
    """The project's model versions in ``store`` and the champion pointer under ``pointer_root``."""

    def __init__(self, store: ModelStore, pointer_root: str, project: str) -> None:
        self.store = store
        self.project = project
        self.pointer_folder = UPath(pointer_root).joinpath("registry", project)

    # --- model versions -------------------------------------------------------------------------------
    def save(
        self,
        model: TrainedModel,
        *,
        schema: dict,
        labels: dict[str, str],
        metrics: dict[str, float],
        training_rows: RowIds,
        reference: pd.DataFrame,
    ) -> ModelVersion:
        """Store the model as a new version of the project's model (metrics at full precision in its
        metadata, rounded in its labels) with the ids of its training rows and its reference sample
        (``mlplatform.lib.monitoring.reference.reference_sample``); returns what the registry now knows of it."""
        with self.store.create(
            self.project,
            labels=labels,
            # BentoML metadata takes no None: the parameters travel as one JSON string
            metadata={
                "schema": schema,
                "metrics": metrics,
                "parameters": json.dumps(model.parameters, default=str),
                "training_rows": {"basis": training_rows.basis, "rows": len(training_rows.values)},
                "reference_rows": len(reference),
            },
        ) as stored:
            joblib.dump(model, stored.path / MODEL_FILE)
            (stored.path / SCHEMA_FILE).write_text(json.dumps(schema, indent=2))
            np.save(stored.path / TRAINING_ROWS_FILE, np.unique(training_rows.values.astype(np.uint64)))
            write_parquet(reference, stored.path / REFERENCE_FILE)
        return self.version(stored.tag)

    def version(self, tag: str) -> ModelVersion:
        return _described(self._get(tag))

    def versions(self) -> list[ModelVersion]:
        """Every stored version of the project's model, oldest first."""
        stored = self.store.list(self.project)
        # BentoML keeps the creation time to the microsecond: two saves, one after the other, never tie. Cut to
        # the second (as ``created`` shows it), they did, and the tag (random) then decided which came first.
        return [_described(m) for m in sorted(stored, key=lambda m: (m.created, m.tag))]

    def trained_on(self, data_version: str, spec: ProjectSpec) -> ModelVersion | None:
        """The stored version already trained on this data version with this spec and this code, if any:
        training again would only store a copy of it (every random step is seeded)."""
        wanted = {"data_version": data_version, "spec_hash": spec_hash(spec), "code_hash": code_hash()}
        for version in reversed(self.versions()):
            if all(version.labels.get(key) == value for key, value in wanted.items()):
                return version
        return None

    def local_path(self, tag: str) -> Path:
        """The folder of ``tag``'s files on this machine, fetched first from a store elsewhere (what a ``bentoml
        build`` in this process's BentoML home needs to find)."""
        return self._get(tag).path

    def load(self, tag: str) -> LoadedModel:
        stored = self._get(tag)
        model, schema = read_version(stored.path)
        return LoadedModel(tag=stored.tag, model=model, schema=schema, labels=dict(stored.labels))

    def training_rows(self, tag: str) -> RowIds | None:
        """The sorted, distinct ids of the rows ``tag`` was trained on; None for a version stored before they
        were kept."""
        stored = self._get(tag)
        path = stored.path / TRAINING_ROWS_FILE
        basis = stored.metadata.get("training_rows", {}).get("basis")
        if not path.exists() or basis is None:
            return None
        return RowIds(np.load(path, allow_pickle=False), basis)

    def schema(self, tag: str) -> dict:
        """The input schema stored with ``tag``, without loading its model."""
        return json.loads((self._get(tag).path / SCHEMA_FILE).read_text())

    def reference(self, tag: str) -> pd.DataFrame | None:
        """The reference sample stored with ``tag`` (its training inputs and its predictions on them); None for a
        version stored before they were kept."""
        path = self._get(tag).path / REFERENCE_FILE
        return pd.read_parquet(path) if path.exists() else None

    def _get(self, tag: str) -> StoredVersion:
        check_pinned(tag)
        try:
            return self.store.get(tag)
        except NotStored as exc:
            known = ", ".join(v.tag for v in self.versions()[-5:]) or "none"
            raise RegistryError(f"model {tag!r} is not in {self.store.where} (latest: {known})") from exc

    # --- the champion pointer -------------------------------------------------------------------------
    def champion(self) -> Promotion | None:
        pointer = read_snapshot(self.pointer_folder / "champion.json")
        return _promotion(pointer.payload)

    def history(self) -> list[Promotion]:
        """Every change of champion, oldest first (the current champion's included, even if its promotion stopped
        before writing its line)."""
        recorded = _history(read_snapshot(self.pointer_folder / "history.jsonl").payload)
        return _with(recorded, [self.champion()])

    def promote(
        self, tag: str, *, kind: PromotionKind, by: str, reason: str, run_id: str = "", evidence: dict | None = None
    ) -> Promotion:
        """Make ``tag`` the champion, unless another promotion moves the champion first (ChampionMoved)."""
        self._get(tag)  # it must exist: a pointer to nothing would break serving
        if not reason.strip():
            raise RegistryError(f"promoting {tag}: say why (a reason is recorded with every change of champion)")
        pointer = self.pointer_folder / "champion.json"
        read = read_snapshot(pointer)
        current = _promotion(read.payload)
        promotion = Promotion(
            tag=tag,
            previous=current.tag if current else None,
            kind=kind,
            by=by,
            reason=reason,
            at=datetime.now(UTC).isoformat(timespec="seconds"),
            run_id=run_id,
            evidence=evidence or {},
            id=uuid.uuid4().hex,
        )
        promotion = _promotion(_encoded(promotion))  # as readers will see it (JSON types), to find it again
        try:
            write_if_unchanged(pointer, _encoded(promotion, indent=2), read)
        except WriteConflict as exc:
            moved = self.champion()
            raise ChampionMoved(
                f"promoting {tag} in project {self.project!r}: the champion moved to {moved.tag if moved else None} "
                f"({moved.kind if moved else 'removed'} by {moved.by if moved else 'someone'}) while this promotion "
                f"read {promotion.previous}; nothing changed: decide again against the new champion"
            ) from exc
        self._record([current, promotion])
        return promotion

    def _record(self, promotions: list[Promotion | None]) -> None:
        """Append the promotions the history does not hold yet, in order; a conditional write, tried again
        when another promotion appended first (appends of different promotions never exclude each other)."""
        log = self.pointer_folder / "history.jsonl"
        while True:
            read = read_snapshot(log)
            recorded = _history(read.payload)
            complete = _with(recorded, promotions)
            if len(complete) == len(recorded):
                return
            lines = b"".join(_encoded(promotion) + b"\n" for promotion in complete[len(recorded) :])
            try:
                write_if_unchanged(log, (read.payload or b"") + lines, read)
                return
            except WriteConflict:
                continue

    def rollback_target(self) -> str:
        """The champion before the current one: what ``rollback`` restores when no tag is named."""
        current = self.champion()
        if current is None:
            raise RegistryError(f"project {self.project!r} has no champion to roll back from")
        if current.previous is None:
            raise RegistryError(f"{current.tag} is the first champion: there is nothing to roll back to")
        return current.previous


def _promotion(payload: bytes | None) -> Promotion | None:
    return Promotion(**json.loads(payload)) if payload else None


def _history(payload: bytes | None) -> list[Promotion]:
    text = (payload or b"").decode()
    return [Promotion(**json.loads(line)) for line in text.splitlines() if line.strip()]


def _with(recorded: list[Promotion], promotions: list[Promotion | None]) -> list[Promotion]:
    """``recorded`` followed by those of ``promotions`` it does not hold."""
    held = {_identity(p) for p in recorded}
    return recorded + [p for p in promotions if p is not None and _identity(p) not in held]


def _identity(promotion: Promotion) -> str | bytes:
    return promotion.id or _encoded(promotion)


def _encoded(promotion: Promotion, indent: int | None = None) -> bytes:
    return json.dumps(asdict(promotion), default=str, indent=indent).encode()
