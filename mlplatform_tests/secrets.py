"""Where a secret could leak, searched for the secret's value: files written to disk (manifests, logs, the
home), a Dagster instance's event log (run logs and asset metadata), and every layer of a container image.

Each finder returns where it found which secret (by the name the caller gave it, never the value), so a failing
assertion says where to look without printing what it protects. A value is also searched in the encodings it
would take on the way: base64 (a Kubernetes Secret's ``data``) and JSON-escaped."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import dagster as dg

MIN_SECRET_LENGTH = 8  # shorter values match by chance, and no real secret is that short


def encodings(value: str) -> list[bytes]:
    """The byte strings ``value`` may be written as."""
    if len(value) < MIN_SECRET_LENGTH:
        raise ValueError(f"a secret of {len(value)} characters would match by chance: use {MIN_SECRET_LENGTH} or more")
    raw = value.encode()
    return list(dict.fromkeys([raw, base64.b64encode(raw), json.dumps(value)[1:-1].encode()]))


def _found_in(data: bytes, secrets: Mapping[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if any(form in data for form in encodings(value))]


def in_files(root: Path, secrets: Mapping[str, str]) -> list[str]:
    """``path: secret name`` for every file under ``root`` that holds a secret."""
    found = []
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file() and not p.is_symlink()):
        found += [f"{path}: {name}" for name in _found_in(path.read_bytes(), secrets)]
    return found


def in_texts(texts: Mapping[str, str], secrets: Mapping[str, str]) -> list[str]:
    """``label: secret name`` for every text (a process's output, a manifest) that holds a secret."""
    return [f"{label}: {name}" for label, text in texts.items() for name in _found_in(text.encode(), secrets)]


def in_event_log(instance: dg.DagsterInstance, secrets: Mapping[str, str]) -> list[str]:
    """``run <id>, event <n> (<type>): secret name`` for every stored event of every run, run logs and asset
    materializations with their metadata included, and every run's config and tags."""
    found = []
    for run in instance.get_runs():
        header = json.dumps({"config": run.run_config, "tags": run.tags}, default=str).encode()
        found += [f"run {run.run_id} config or tags: {name}" for name in _found_in(header, secrets)]
        for number, record in enumerate(instance.all_logs(run.run_id)):
            text = dg.serialize_value(record).encode()
            kind = record.dagster_event.event_type_value if record.dagster_event else "log message"
            found += [f"run {run.run_id}, event {number} ({kind}): {name}" for name in _found_in(text, secrets)]
    return found


def in_image(reference: str, secrets: Mapping[str, str]) -> list[str]:
    """``<layer>/<path>: secret name`` for every file of every layer of image ``reference`` (``docker save``,
    streamed), and for its config (environment, labels, build history)."""
    saved = subprocess.Popen(["docker", "save", reference], stdout=subprocess.PIPE)
    try:
        found = list(_in_saved_image(saved.stdout, secrets))
    finally:
        saved.stdout.close()
        saved.wait(timeout=300)
    if saved.returncode != 0:
        raise RuntimeError(f"docker save {reference} failed (exit {saved.returncode})")
    return found


def _in_saved_image(stream, secrets: Mapping[str, str]) -> Iterator[str]:
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            if not member.isfile():
                continue
            data = archive.extractfile(member).read()
            if _is_layer(data):
                with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as layer:
                    for inner in layer:
                        if inner.isfile():
                            content = layer.extractfile(inner).read()
                            yield from (f"{member.name}/{inner.name}: {n}" for n in _found_in(content, secrets))
            else:  # the image config and manifest: environment, labels, history
                yield from (f"{member.name}: {name}" for name in _found_in(data, secrets))


def _is_layer(data: bytes) -> bool:
    """A layer: a tar archive, plain or gzipped (``docker save`` writes both, depending on the engine)."""
    return data[:2] == b"\x1f\x8b" or (len(data) > 262 and data[257:262] == b"ustar")
