"""A bento as a container image in a registry: ``bentoml containerize``, then ``docker push``.

Both need a Docker engine (``DOCKER_HOST`` or the default socket). Without one, ``require_engine`` says so
and how to get one, instead of letting the build fail halfway or the asset succeed without an image."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mlplatform.resources.bentos import bentoml_environment


class ImageError(RuntimeError):
    """No Docker engine, or containerize / push failed; the message says which and quotes the output."""


@dataclass(frozen=True)
class Image:
    reference: str  # registry/repository:tag, as pushed
    digest: str  # registry/repository@sha256:..., what a Deployment should pin
    size_bytes: int
    bento: str


def image_reference(registry: str, bento: str) -> str:
    """``<registry>/<bento name>:<bento version>``: one image per bento, named after it."""
    name, version = bento.split(":", 1)
    return f"{registry.rstrip('/')}/{name}:{version}"


def require_engine() -> None:
    if shutil.which("docker") is None:
        raise ImageError(
            "no docker CLI on PATH, so no container image can be built: start a Docker engine (on a machine "
            'without one, `eval "$(../shared/k8s/local-cluster up)"` provides one and a registry), or leave '
            "MLPLATFORM_REGISTRY unset to leave the image out of the graph"
        )
    probe = _docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    if probe.returncode != 0:
        raise ImageError(
            "the Docker engine does not answer (`docker info` failed), so no container image can be built: "
            f"start one, or leave MLPLATFORM_REGISTRY unset to leave the image out of the graph.\n{_tail(probe)}"
        )


class DockerEngine:
    """Images built by ``bentoml containerize`` and pushed by ``docker push`` to ``registry``."""

    def __init__(self, registry: str, *, bentoml_home: str | Path, network: str = "host") -> None:
        self.registry, self.bentoml_home, self.network = registry, bentoml_home, network

    def push(self, bento: str) -> Image:
        return containerize(bento, self.registry, bentoml_home=self.bentoml_home, network=self.network)


def containerize(bento: str, registry: str, *, bentoml_home: str | Path, network: str = "host") -> Image:
    """Build the bento's image, push it to ``registry``, and return what was pushed."""
    require_engine()
    reference = image_reference(registry, bento)
    command = [sys.executable, "-m", "bentoml", "containerize", bento, "-t", reference]
    if network:
        command += ["--opt", f"network={network}"]
    built = subprocess.run(command, env=bentoml_environment(bentoml_home), capture_output=True, text=True, timeout=1800)
    if built.returncode != 0:
        raise ImageError(f"bentoml containerize {bento} failed (exit {built.returncode}):\n{_tail(built)}")
    pushed = _docker("push", reference, timeout=900)
    if pushed.returncode != 0:
        raise ImageError(f"docker push {reference} failed (exit {pushed.returncode}):\n{_tail(pushed)}")
    inspected = _docker("image", "inspect", reference, "--format", "{{index .RepoDigests 0}} {{.Size}}", timeout=60)
    if inspected.returncode != 0:
        raise ImageError(f"docker image inspect {reference} failed:\n{_tail(inspected)}")
    digest, size = inspected.stdout.split()
    return Image(reference=reference, digest=digest, size_bytes=int(size), bento=bento)


def _docker(*arguments: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *arguments], capture_output=True, text=True, timeout=timeout)


def _tail(done: subprocess.CompletedProcess, lines: int = 40) -> str:
    return "\n".join((done.stdout + done.stderr).splitlines()[-lines:])
