"""The local deployment target: the champion's bento served by ``bentoml serve`` as a process that outlives the
run that started it, replaced when a new bento arrives.

The running server is described by ``<folder>/server.json`` (process id and start time, so a reused pid is
never mistaken for it, bento, model, URL, log). When that file is gone (the home folder deleted under a running
server), the server is found from its port: the ``bentoml serve`` process whose command line listens there.

A replacement stops the running server, starts the new bento on the same port and waits for /readyz; when the
new one does not come up, the previous bento is started again, so the last good model keeps serving, and the
error quotes the new server's log."""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil
from upath import UPath

from mlplatform.lib.storage import write_atomically
from mlplatform.resources.bentos import BentoError, serve, stop_server

STATE_FILE = "server.json"
TOKEN_FILE = "token"


@dataclass(frozen=True)
class RunningServer:
    pid: int
    create_time: float
    bento: str
    model_tag: str
    url: str
    log: str
    started_at: str


class LocalDeployment:
    """``bentoml serve`` of one bento at a time on ``host:port``; state, token and logs under ``folder``."""

    def __init__(
        self,
        folder: Path,
        *,
        port: int,
        bentoml_home: Path,
        prediction_log: Path,
        host: str = "127.0.0.1",
        api_token: str | None = None,
    ):
        self.folder, self.port, self.host = Path(folder), port, host
        self.bentoml_home, self.prediction_log = Path(bentoml_home), Path(prediction_log)
        self._api_token = api_token

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def token(self) -> str:
        """The bearer token predictions need: the one given (MLPLATFORM_API_TOKEN, a secret), else one
        generated once and kept in ``<folder>/token`` (readable by this user only)."""
        if self._api_token:
            return self._api_token
        path = self.folder / TOKEN_FILE
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_urlsafe(32))
        return path.read_text().strip()

    @property
    def token_path(self) -> Path | None:
        return None if self._api_token else self.folder / TOKEN_FILE

    def current(self) -> RunningServer | None:
        """The server this folder started, if that very process is still alive; without ``server.json``, the
        ``bentoml serve`` on this host and port, if one runs."""
        path = self.folder / STATE_FILE
        if not path.exists():
            return serving_on(self.host, self.port)
        running = RunningServer(**json.loads(path.read_text()))
        return running if is_alive(running) else None

    def deploy(
        self, bento: str, model_tag: str, *, check: Callable[[str, str], None] | None = None, timeout: float = 120
    ) -> RunningServer:
        """Serve ``bento`` here, in place of whatever this folder's server served; returns the new server.
        ``check(url, token)`` runs once the server is ready (a real prediction, say) and raises if it is wrong:
        a server that does not start or fails its check is stopped and the previous bento serves again."""
        previous = self.current()
        if previous is not None:
            stop_running(previous)
        try:
            return self._start(bento, model_tag, timeout, check)
        except Exception as failure:
            if previous is None:
                raise
            try:
                self._start(previous.bento, previous.model_tag, timeout, None)
            except BentoError as restore:
                raise BentoError(
                    f"{failure}\n\nrestarting the previous bento {previous.bento} failed too: {restore}"
                ) from failure
            raise BentoError(
                f"{failure}\n\nthe previous bento {previous.bento} ({previous.model_tag}) serves again at {self.url}"
            ) from failure

    def stop(self) -> RunningServer | None:
        running = self.current()
        if running is not None:
            stop_running(running)
        (self.folder / STATE_FILE).unlink(missing_ok=True)
        return running

    def _start(
        self, bento: str, model_tag: str, timeout: float, check: Callable[[str, str], None] | None
    ) -> RunningServer:
        log = self.folder / "logs" / f"{bento.replace(':', '-')}.log"
        server = serve(
            bento,
            port=self.port,
            host=self.host,
            bentoml_home=self.bentoml_home,
            log_path=log,
            environment={
                "MLPLATFORM_API_TOKEN": self.token(),
                "MLPLATFORM_AUTH": "token",
                "MLPLATFORM_PREDICTION_LOG": str(self.prediction_log),
            },
        )
        try:
            server.wait_ready(timeout)
            if check is not None:
                check(server.url, self.token())
        except BaseException:
            server.stop()
            raise
        running = RunningServer(
            pid=server.process.pid,
            create_time=psutil.Process(server.process.pid).create_time(),
            bento=bento,
            model_tag=model_tag,
            url=self.url,
            log=str(log),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        write_atomically(UPath(self.folder / STATE_FILE), json.dumps(asdict(running), indent=2).encode())
        return running


def serving_on(host: str, port: int) -> RunningServer | None:
    """The ``bentoml serve`` process started (by ``bentos.serve``) on ``host:port``, described from its command
    line: what is known of a server whose ``server.json`` was lost. Its model is not known (``unknown``)."""
    for process in psutil.process_iter(["cmdline", "create_time"]):
        command = process.info["cmdline"] or []
        if command[1:4] != ["-m", "bentoml", "serve"] or len(command) < 5:
            continue
        options = dict(zip(command[5::2], command[6::2], strict=False))
        if options.get("--port") == str(port) and options.get("--host") == host:
            return RunningServer(
                pid=process.pid,
                create_time=process.info["create_time"],
                bento=command[4],
                model_tag="unknown",
                url=f"http://{host}:{port}",
                log="",
                started_at=datetime.fromtimestamp(process.info["create_time"], UTC).isoformat(timespec="seconds"),
            )
    return None


def is_alive(running: RunningServer) -> bool:
    try:
        process = psutil.Process(running.pid)
        return abs(process.create_time() - running.create_time) < 0.01 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_running(running: RunningServer, timeout: float = 30) -> None:
    """Stop a server started by any process (this one or an earlier run): its workers with it."""
    if not is_alive(running):
        return
    stop_server(running.pid, timeout)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _port_open(running.url):
        time.sleep(0.1)


def _port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, int(port))) == 0
