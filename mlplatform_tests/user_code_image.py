"""The user-code image (deploy/Dockerfile) built from this checkout on the local cluster's Docker engine and pushed
to its registry, for tests and benches that run Dagster on Kubernetes. Tagged by a hash of what goes into it, so an
unchanged checkout reuses the image, and a changed one rebuilds only the layers after the dependencies'."""

from __future__ import annotations

import hashlib
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mlplatform_tests.cluster import PROJECT_ROOT

DOCKERFILE = PROJECT_ROOT / "deploy" / "Dockerfile"
# What deploy/Dockerfile copies (the rest of the context is cut by .dockerignore).
CONTEXT = ("pyproject.toml", "uv.lock", "README.md", "dagster.yaml", "workspace.yaml", "mlplatform", "bentos")
BUILD_SECONDS = 1800  # a new machine downloads every dependency: minutes; a code change alone: about 30 s
PUSH_SECONDS = 900


class ImageBuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class BuiltImage:
    reference: str
    build_seconds: float
    push_seconds: float


def context_hash(root: Path = PROJECT_ROOT) -> str:
    """A hash of every file the image is built from (bytecode caches and local state left out)."""
    digest = hashlib.sha256(DOCKERFILE.read_bytes())
    for name in CONTEXT:
        path = root / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            relative = file.relative_to(root).as_posix()
            if "__pycache__" in file.parts or ".mlplatform" in file.parts or file.suffix == ".pyc":
                continue
            digest.update(relative.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build_and_push(registry: str, environment: dict[str, str], name: str = "mlplatform") -> BuiltImage:
    """``docker build`` of deploy/Dockerfile (host networking: the local engine's build containers have no other)
    and ``docker push``, on the engine ``environment`` names (DOCKER_HOST)."""
    reference = f"{registry}/{name}:src-{context_hash()}"
    started = time.monotonic()
    built = subprocess.run(
        ["docker", "build", "--network=host", "-f", str(DOCKERFILE), "-t", reference, str(PROJECT_ROOT)],
        capture_output=True,
        text=True,
        timeout=BUILD_SECONDS,
        env=environment,
    )
    if built.returncode != 0:
        raise ImageBuildError(f"docker build of {DOCKERFILE} failed (exit {built.returncode}):\n{built.stderr[-4000:]}")
    build_seconds = time.monotonic() - started
    started = time.monotonic()
    pushed = subprocess.run(
        ["docker", "push", reference], capture_output=True, text=True, timeout=PUSH_SECONDS, env=environment
    )
    if pushed.returncode != 0:
        raise ImageBuildError(f"docker push {reference} failed (exit {pushed.returncode}):\n{pushed.stderr[-4000:]}")
    return BuiltImage(reference, build_seconds, time.monotonic() - started)
