"""The machine's local cluster (``shared/k8s/local-cluster``): a private Docker engine, an image registry and a
single-node Kubernetes on 127.0.0.1. Tests that need it start it (``up`` is a no-op when it runs) and stop it
at the end of the session only when they started it."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
UP_SECONDS = 1800  # the first `up` on a machine builds Kubernetes from source (~6 min here); later ones ~10 s


class ClusterError(RuntimeError):
    pass


# Where this workplace keeps it; a clone elsewhere (CI's) finds it here when not beside the checkout.
WORKPLACE_SCRIPT = Path("/work/shared/k8s/local-cluster")


def local_cluster_script() -> Path | None:
    """MLPLATFORM_LOCAL_CLUSTER; else ``shared/k8s/local-cluster`` beside this checkout or one of its parents,
    or in the workplace; None on a machine that has none."""
    if os.environ.get("MLPLATFORM_LOCAL_CLUSTER"):
        return Path(os.environ["MLPLATFORM_LOCAL_CLUSTER"])
    for folder in [PROJECT_ROOT, *PROJECT_ROOT.parents]:
        candidate = folder / "shared" / "k8s" / "local-cluster"
        if candidate.is_file():
            return candidate
    return WORKPLACE_SCRIPT if WORKPLACE_SCRIPT.is_file() else None


def exports(text: str) -> dict[str, str]:
    """The ``export NAME=value`` lines ``local-cluster up`` prints, as a dict."""
    found = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            found[name] = value.replace("$PATH", os.environ.get("PATH", ""))
    return found


@contextmanager
def local_cluster() -> Iterator[dict[str, str]]:
    """The cluster's environment (DOCKER_HOST, KUBECONFIG, MLPLATFORM_REGISTRY, PATH, ...), up for the block."""
    script = local_cluster_script()
    if script is None:
        raise ClusterError(
            f"no shared/k8s/local-cluster beside {PROJECT_ROOT}, its parents or {WORKPLACE_SCRIPT.parent}: set "
            "MLPLATFORM_LOCAL_CLUSTER to the script that starts this machine's Docker engine and registry"
        )
    already_up = subprocess.run([script, "status"], capture_output=True).returncode == 0
    up = subprocess.run([script, "up"], capture_output=True, text=True, timeout=UP_SECONDS)
    if up.returncode != 0:
        raise ClusterError(f"{script} up failed (exit {up.returncode}):\n{up.stderr[-4000:]}")
    try:
        yield exports(up.stdout)
    finally:
        if not already_up:
            subprocess.run([script, "down"], capture_output=True, timeout=300)


def derived_image(digest: str, registry: str, repository: str, *instructions: str) -> str:
    """``digest``'s image with ``instructions`` (Dockerfile lines) on top, pushed to ``registry`` as
    ``repository``; its digest. One thin layer, so it builds in seconds where `bentoml containerize` takes
    minutes: a version of a bento that fails on purpose, or the same bento as another image."""
    reference = f"{registry}/{repository}:{digest.rsplit(':', 1)[1][:12]}"
    dockerfile = "\n".join([f"FROM {digest}", *instructions]) + "\n"
    steps = ((["build", "--network=host", "-t", reference, "-"], dockerfile), (["push", reference], None))
    for command, stdin in steps:
        done = subprocess.run(["docker", *command], input=stdin, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise ClusterError(f"docker {' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    inspected = subprocess.run(
        ["docker", "image", "inspect", reference, "--format", "{{index .RepoDigests 0}}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if inspected.returncode != 0:
        raise ClusterError(f"docker image inspect {reference} failed:\n{inspected.stderr[-2000:]}")
    return inspected.stdout.strip()
