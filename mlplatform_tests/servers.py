"""Real servers for tests, on 127.0.0.1: moto's S3 server and PostgreSQL in subprocesses, and a small HTTP
server in a thread.

Each speaks its real protocol, so the code under test goes through its real client stack (s3fs/aiobotocore,
requests, psycopg) exactly as it would against AWS, a managed database or a partner's API.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MOTO_START_SECONDS = 60
MOTO_STOP_SECONDS = 10
POSTGRES_START_SECONDS = 60
POSTGRES_STOP_SECONDS = 30
# PostgreSQL refuses to run as root; as root, the tests run it as the user Debian's postgresql package creates.
POSTGRES_USER_WHEN_ROOT = "postgres"
# Fake credentials: moto accepts any, and botocore refuses to sign a request without some.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    def environment(self, config_dir: Path) -> dict[str, str]:
        """What points boto3 and s3fs at this server, with no code in the spec: botocore (>= 1.31) reads
        AWS_ENDPOINT_URL_S3. The config files are redirected so a developer's ~/.aws cannot interfere."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_CONFIG_FILE": str(config_dir / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(config_dir / "aws-credentials"),
            **FAKE_CREDENTIALS,
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=FAKE_CREDENTIALS["AWS_DEFAULT_REGION"],
        )


@dataclass(frozen=True)
class S3Bucket:
    """A freshly created, uniquely named bucket on an S3Server."""

    server: S3Server
    name: str

    @classmethod
    def create(cls, server: S3Server) -> S3Bucket:
        bucket = cls(server, f"test-{uuid.uuid4().hex[:16]}")
        server.client().create_bucket(Bucket=bucket.name)
        return bucket

    def put(self, key: str, payload: bytes) -> str:
        self.server.client().put_object(Bucket=self.name, Key=key, Body=payload)
        return self.uri(key)

    def uri(self, key: str = "") -> str:
        return f"s3://{self.name}/{key}"


@contextmanager
def running_moto_server(log_dir: Path, host: str = "127.0.0.1") -> Iterator[S3Server]:
    """moto's S3 server as a subprocess on a free port of ``host`` (the local cluster's
    ``$MLPLATFORM_HOST_FROM_PODS`` for a server its pods use); stopped (terminate, then kill) on exit."""
    log_path = log_dir / "moto_server.log"
    with log_path.open("ab") as log:
        process, port = _serve_on_a_free_port(
            "moto's server",
            lambda port: subprocess.Popen(
                [sys.executable, "-m", "moto.server", "--host", host, "--port", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            ),
            lambda port: _answers_http(f"http://{host}:{port}/moto-api/"),
            MOTO_START_SECONDS,
            log_path,
        )
        try:
            yield S3Server(f"http://{host}:{port}")
        finally:
            _stop(process, signal.SIGTERM, MOTO_STOP_SECONDS)


def _answers_http(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _serve_on_a_free_port(
    name: str,
    start: Callable[[int], subprocess.Popen],
    answers: Callable[[int], bool],
    timeout: float,
    log_path: Path,
) -> tuple[subprocess.Popen, int]:
    """``start(port)`` on a free port until ``answers(port)``; the process and its port. The port is free when
    probed but could be taken before the server binds it: a server that exits while starting gets another."""
    for _attempt in range(3):
        port = free_port()
        process = start(port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if answers(port):
                return process, port
            time.sleep(0.05)
        if process.poll() is None:
            _stop(process, signal.SIGKILL, timeout)
            raise RuntimeError(f"{name} did not answer on port {port} within {timeout}s; see {log_path}")
    raise RuntimeError(f"{name} exited with code {process.returncode} while starting; see {log_path}")


def _stop(process: subprocess.Popen, sig: signal.Signals, timeout: float) -> None:
    """``sig`` to the process, then a kill if it has not exited within ``timeout`` seconds."""
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass(frozen=True)
class PostgresServer:
    """A PostgreSQL server on 127.0.0.1 that asks for a password (scram-sha-256), as a managed database does."""

    port: int
    user: str
    password: str = field(repr=False)
    log_path: Path = field(repr=False)
    host: str = "127.0.0.1"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres", **options):
        import psycopg

        return psycopg.connect(self.url(database), connect_timeout=5, **options)

    def create_database(self, prefix: str = "test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        from psycopg import sql

        with self.connect(autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def environment(self, database: str) -> dict[str, str]:
        """What deploy/dagster.yaml reads to reach ``database`` on this server."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": database,
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
        }


@contextmanager
def running_postgres(bin_dir: Path, host: str = "127.0.0.1") -> Iterator[PostgresServer]:
    """A new PostgreSQL cluster (``initdb``) served by ``postgres`` on a free port of ``host``, its Unix socket in
    the cluster's folder; stopped (fast shutdown, then kill) and deleted on exit. On another address than
    loopback (the local cluster's $MLPLATFORM_HOST_FROM_PODS, say) it accepts password logins from the networks
    that address is on, such as the pods'. The cluster lives in a folder of
    its own under the system's temporary folder rather than pytest's, which only root may enter when the
    server runs as another user."""
    account = pwd.getpwnam(POSTGRES_USER_WHEN_ROOT) if os.geteuid() == 0 else None
    as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []} if account else {}
    # /tmp itself, not $TMPDIR: a test's TMPDIR may be inside a folder only root may enter (test_bench's is)
    root = Path(tempfile.mkdtemp(prefix="mlplatform-pg-", dir="/tmp" if account else None))
    try:
        if account:
            os.chown(root, account.pw_uid, account.pw_gid)
        server = PostgresServer(
            port=0, user="mlplatform", password=secrets.token_urlsafe(16), log_path=root / "log", host=host
        )
        password_file = root / "password"
        password_file.write_text(server.password)
        if account:
            os.chown(password_file, account.pw_uid, account.pw_gid)
        initdb = [str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", server.user, "--auth=scram-sha-256"]
        initdb += [f"--pwfile={password_file}", "--encoding=UTF8", "--locale=C", "--no-sync"]
        done = subprocess.run(initdb, capture_output=True, text=True, stdin=subprocess.DEVNULL, **as_user)
        if done.returncode != 0:
            raise RuntimeError(f"initdb exited {done.returncode}:\n{done.stdout}{done.stderr}")
        password_file.unlink()
        if host != "127.0.0.1":  # initdb lets in only loopback clients
            with (root / "data" / "pg_hba.conf").open("a") as rules:
                rules.write("host all all samenet scram-sha-256\n")
        with server.log_path.open("ab") as log:
            process, port = _serve_on_a_free_port(
                "postgres",
                lambda port: subprocess.Popen(
                    [str(bin_dir / "postgres"), "-D", str(root / "data"), "-p", str(port), "-h", server.host]
                    + ["-k", str(root), "-c", "fsync=off", "-c", "max_connections=200"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    **as_user,
                ),
                lambda port: _answers_sql(replace(server, port=port)),
                POSTGRES_START_SECONDS,
                server.log_path,
            )
            try:
                yield replace(server, port=port)
            finally:  # SIGINT is PostgreSQL's fast shutdown: it ends the clients' sessions, then stops
                _stop(process, signal.SIGINT, POSTGRES_STOP_SECONDS)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _answers_sql(server: PostgresServer) -> bool:
    import psycopg

    try:
        with server.connect() as connection:
            connection.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


@dataclass(frozen=True)
class Route:
    body: bytes
    content_type: str = "text/plain"
    status: int = 200
    required_headers: Mapping[str, str] = field(default_factory=dict)


class HTTPTestServer:
    """Serves fixed responses by path; answers 401 when a route's required headers are missing or wrong."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, path: str, body: str | bytes, content_type: str = "text/plain", **options) -> str:
        payload = body.encode() if isinstance(body, str) else body
        self.routes[path] = Route(payload, content_type, **options)
        return self.base_url + path

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, dict(self.headers)))
                route = server.routes.get(self.path)
                if route is None:
                    self._answer(404, b"no such route", "text/plain")
                elif any(self.headers.get(k) != v for k, v in route.required_headers.items()):
                    self._answer(401, b"missing or wrong credentials", "text/plain")
                else:
                    self._answer(route.status, route.body, route.content_type)

            def _answer(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
                self.send_response(status)
                for name, value in {"Content-Type": content_type, **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
                pass

        return Handler

    def __enter__(self) -> HTTPTestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class WebhookReceiver(HTTPTestServer):
    """Takes POSTed JSON on any path, as a Slack incoming webhook or an alert receiver would: records each
    body, and answers with ``statuses`` in turn (a 5xx to make the sender retry, say), then 200."""

    def __init__(self, statuses: list[int] | None = None, retry_after: str | None = None) -> None:
        self.statuses = list(statuses or [])
        self.retry_after = retry_after
        self.received: list[dict] = []  # every POST's JSON body, answered with any status
        self.delivered: list[dict] = []  # those answered 200
        self._lock = threading.Lock()
        super().__init__()

    @property
    def url(self) -> str:
        return f"{self.base_url}/services/T000/B000/secret-path-of-the-webhook"

    def wait_for(self, count: int, timeout: float) -> list[dict]:
        """Until ``count`` bodies were delivered (or the timeout); the bodies delivered by then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.delivered) < count:
            time.sleep(0.2)
        return list(self.delivered)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(super()._handler()):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
                with receiver._lock:
                    receiver.received.append(body)
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    if status == 200:
                        receiver.delivered.append(body)
                headers = {"Retry-After": receiver.retry_after} if receiver.retry_after and status == 429 else {}
                answer = b"ok" if status == 200 else b"try again later" if status >= 429 else b"invalid_payload"
                self._answer(status, answer, "text/plain", **headers)

        return Handler
