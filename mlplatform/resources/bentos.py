"""The prediction bento as a thing to build and to run: ``bentoml build`` pinned to a model version, and
``bentoml serve`` as a managed local process (ready when /readyz answers, stopped with its workers). The
Dagster bento asset and the local deployment call these; so do the serving tests and the benchmark."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import psutil
import yaml

from mlplatform.lib.project_files import PACKAGE_DIR, PACKAGED, project_file
from mlplatform.lib.serving.serving import pinned_tag

START_SECONDS = 120
STOP_SECONDS = 30
# What `bentoml serve` dies of when another process took one of the two control ports its process manager
# (circus) reserved and released a moment before binding them: the ports are BentoML's choice, not ours, so a
# server that exits with this is started once more.
CONTROL_PORT_RACE = ("ZMQError", "Address already in use")
# An idle keep-alive connection is closed after this long (uvicorn's default, stated here on purpose)
KEEP_ALIVE_SECONDS = 5
# A server's log is rotated past this size, keeping this many older files (mlplatform.lib.log_relay)
LOG_MAX_BYTES = 16 * 1024 * 1024
LOG_BACKUPS = 3


class BentoError(RuntimeError):
    """A bento did not build, start or stop; the message names it and quotes the end of its log."""


def bentoml_environment(bentoml_home: str | Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a ``bentoml`` child, pointed at one BentoML home, telemetry off."""
    return {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true", **(extra or {})}


# What the service imports beyond BentoML's own dependencies, pinned in the bento to the versions installed
# here: a model is a pickled scikit-learn pipeline, and it must be unpickled by the library that pickled it.
SERVING_PACKAGES = (
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "scipy",
    "joblib",
    "pydantic",
    "pyyaml",
    "universal-pathlib",
    "fsspec",
    "psutil",
    "prometheus-client",
    # the HTTP server as measured and tested here: the connection guard (lib/serving/connections.py) is
    # uvicorn's httptools protocol, and uvicorn picks uvloop when it is installed
    "uvicorn",
    "httptools",
    "uvloop",
)


def serving_requirements() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in SERVING_PACKAGES]


def build(model_tag: str, *, bentoml_home: str | Path, service_dir: Path | None = None) -> str:
    """Build the service in ``service_dir`` (default: the project's ``bentos/predictor``) into a bento that
    serves exactly ``model_tag``; returns the bento's tag. The model must be in the home's model store: the
    bento refers to it by that version.

    The bento is self-contained: its source holds a copy of the ``mlplatform`` package (the feature code the
    model was trained with), and its requirements pin the versions installed here, so ``bentoml serve`` of an
    old bento runs the code it was built with and ``bentoml containerize`` needs nothing from this checkout.

    Its version is a hash of all that (the source, the requirements, the model tag): a bento already in the
    home for the same model and code is reused, not built again (``mlplatform serve`` after a crash)."""
    service_dir = service_dir or project_file("bentos", "predictor")
    with tempfile.TemporaryDirectory(prefix="mlplatform-bento-") as folder:
        context = Path(folder)
        skip = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(service_dir, context, dirs_exist_ok=True, ignore=skip)
        shutil.copytree(
            PACKAGE_DIR, context / "mlplatform", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", PACKAGED)
        )
        bentofile = yaml.safe_load((service_dir / "bentofile.yaml").read_text())
        bentofile["include"] = [*bentofile.get("include", []), "mlplatform/**/*.py", "mlplatform/**/*.yaml"]
        bentofile.setdefault("python", {})["packages"] = serving_requirements()
        (context / "bentofile.yaml").write_text(yaml.safe_dump(bentofile, sort_keys=False))
        version = _content_version(context, pinned_tag(model_tag))
        existing = _stored_bento(version, bentoml_home)
        if existing is not None:
            return existing
        done = subprocess.run(
            [sys.executable, "-m", "bentoml", "build", str(context), "--output", "tag", "--version", version]
            + ["--arg", f"model_tag={pinned_tag(model_tag)}"],
            cwd=context,
            env=bentoml_environment(bentoml_home),
            capture_output=True,
            text=True,
            timeout=600,
        )
    tags = [line.removeprefix("__tag__:") for line in done.stdout.splitlines() if line.startswith("__tag__:")]
    if done.returncode != 0 or not tags:
        raise BentoError(f"bentoml build of {service_dir} for {model_tag} failed:\n{_tail(done.stderr + done.stdout)}")
    return tags[-1]


def _content_version(context: Path, model_tag: str) -> str:
    """A bento version naming what goes into it: every file of the build context, and the model version."""
    digest = hashlib.sha256(model_tag.encode())
    for path in sorted(context.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(context)).encode() + b"\0" + path.read_bytes())
    return "c" + digest.hexdigest()[:24]


def _stored_bento(version: str, bentoml_home: str | Path) -> str | None:
    """The tag of the bento of this version in the home's store, if there is one."""
    done = subprocess.run(
        [sys.executable, "-m", "bentoml", "list", "--output", "json"],
        env={**bentoml_environment(bentoml_home), "COLUMNS": "10000"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise BentoError(f"bentoml list in {bentoml_home} failed:\n{_tail(done.stderr + done.stdout)}")
    tags = [bento["tag"] for bento in json.loads(done.stdout or "[]")]
    return next((tag for tag in tags if tag.endswith(f":{version}")), None)


@dataclass
class LocalServer:
    """A ``bentoml serve`` process group on this machine."""

    process: subprocess.Popen
    url: str
    log_path: Path
    # starts the same server again (with its log relay): used once, when the first start lost the port race
    relaunch: Callable[[], tuple[subprocess.Popen, subprocess.Popen | None]] | None = field(default=None, repr=False)
    log_offset: int = 0  # where this process's lines begin in the log
    relay: subprocess.Popen | None = field(default=None, repr=False)  # the log's writer (log_relay)

    def wait_ready(self, timeout: float = START_SECONDS) -> LocalServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if self.relaunch is not None and all(part in self._own_log() for part in CONTROL_PORT_RACE):
                    self.log_offset = self._log_size()
                    self.process, self.relay = self.relaunch()
                    self.relaunch = None
                    continue
                raise BentoError(f"bentoml serve exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise BentoError(f"bentoml serve at {self.url} was not ready within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        stop_server(self.process.pid, timeout)
        self.process.poll()  # psutil reaped it; let Popen know
        if self.relay is not None:
            self.relay.wait(timeout)  # its input ended with the server: it writes the last lines and exits

    def log_tail(self) -> str:
        return _tail(self.log_path.read_text(errors="replace")) if self.log_path.exists() else "(no log)"

    def _own_log(self) -> str:
        with self.log_path.open("rb") as log:
            log.seek(self.log_offset)
            return log.read().decode(errors="replace")

    def _log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve(
    target: str,
    *,
    port: int,
    bentoml_home: str | Path,
    log_path: Path,
    environment: Mapping[str, str] | None = None,
    working_dir: Path | None = None,
    arguments: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
) -> LocalServer:
    """Start ``bentoml serve TARGET`` (a bento tag, or ``service:Predictor`` in ``working_dir``) in a session
    of its own, so that a terminal's signals do not reach it; call ``wait_ready`` before sending requests."""
    command = [sys.executable, "-m", "bentoml", "serve", target, "--host", host, "--port", str(port)]
    command += ["--timeout-keep-alive", str(KEEP_ALIVE_SECONDS)]
    for key, value in (arguments or {}).items():
        command += ["--arg", f"{key}={value}"]
    log_path.parent.mkdir(parents=True, exist_ok=True)

    def launch() -> tuple[subprocess.Popen, subprocess.Popen]:
        # The server's output goes through a relay that rotates the log by size; the relay ends when the server
        # and its workers have all exited (the end of its input), so stopping the server stops it.
        relay = subprocess.Popen(
            [sys.executable, "-m", "mlplatform.lib.log_relay", str(log_path), str(LOG_MAX_BYTES), str(LOG_BACKUPS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            server = subprocess.Popen(
                command,
                cwd=working_dir,
                env=bentoml_environment(bentoml_home, environment),
                stdin=subprocess.DEVNULL,
                stdout=relay.stdin,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            relay.stdin.close()
        return server, relay

    offset = log_path.stat().st_size if log_path.exists() else 0
    server, relay = launch()
    return LocalServer(server, f"http://{host}:{port}", log_path, relaunch=launch, log_offset=offset, relay=relay)


def stop_server(pid: int, timeout: float = STOP_SECONDS) -> None:
    """SIGTERM to a ``bentoml serve`` process, whose process manager stops the workers (they finish their
    requests and run their shutdown hooks); SIGKILL to the server and to any of its workers still alive after
    ``timeout``. The workers run in sessions of their own, so they are found as the server's children, not by
    group. Works for a server started by any process, this one or an earlier run."""
    try:
        server = psutil.Process(pid)
        workers = server.children(recursive=True)
        server.terminate()
    except psutil.NoSuchProcess:
        return
    _, alive = psutil.wait_procs([server, *workers], timeout=timeout)
    for process in alive:
        process.kill()
    psutil.wait_procs(alive, timeout=5)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])
