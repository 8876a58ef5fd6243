"""What stands between a client and the prediction service, besides the token (``auth``): request metrics with
a bounded ``endpoint`` label and the ``/metrics`` page, and the body rules of the prediction endpoints. Both are
ASGI middlewares, so a refused request reaches no BentoML code (whose request parsing answers 500 to a form body
it cannot parse, and whose metrics label every distinct path a client invents).

The contract, as README.md's serving section states it for clients:

- ``415`` a prediction body that is not ``application/json`` (UTF-8): forms, text and a missing type included;
- ``413`` a body larger than ``max_body_bytes`` (announced by Content-Length, or read so far);
- ``408`` a body that does not arrive within ``body_seconds`` of the request's start (a stalled client);
- ``431`` more than ``MAX_HEADERS`` headers or ``MAX_HEADER_BYTES`` of them, on any path;
- every refusal a JSON object ``{"error": ..., "detail": ...}`` and one log line without the request's values.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import prometheus_client
import psutil
from prometheus_client import multiprocess

OTHER_PATHS = "other"  # the one endpoint label of every path the service does not serve
# Headers a request may have, in number and in bytes (nginx's default buffers hold 32 KiB): past them, 431. The
# HTTP server has parsed them by then (BentoML's uvicorn has no such limit): a front proxy must cut them earlier.
MAX_HEADERS = 100
MAX_HEADER_BYTES = 32 * 1024


async def send_json(send, status: int, error: str, detail: object, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Answer with a JSON error, ``{"error": ..., "detail": ...}``, through an ASGI ``send``."""
    body = json.dumps({"error": error, "detail": detail}).encode()
    content = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*content, *headers]})
    await send({"type": "http.response.body", "body": body})


def own_metrics_folder() -> Path | None:
    """Point this worker's multiprocess metrics at a folder of its server's own, and return it (None outside a
    ``bentoml serve`` worker); call it before the first metric is created.

    ``bentoml serve`` gives its workers ``<BENTOML_HOME>/prometheus_multiproc_dir``, the same folder for every
    server of that home, and empties it when a server starts: a second server (a replacement being tried, a
    test's) would wipe the first one's metrics for good. Each server gets ``<that folder>-per-server/<pid>-<start>``
    instead (its workers are its children); the folders of servers no longer running are removed."""
    shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not shared:
        return None
    root = Path(shared).with_name(Path(shared).name + "-per-server")
    server = psutil.Process(os.getppid())
    own = root / _server_folder_name(server.pid, server.create_time())
    own.mkdir(parents=True, exist_ok=True)
    for other in root.iterdir():
        pid, _, _ = other.name.partition("-")
        try:
            running = psutil.Process(int(pid))
            alive = other.name == _server_folder_name(running.pid, running.create_time())
        except (ValueError, psutil.Error):
            alive = False
        if not alive:
            shutil.rmtree(other, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(own)
    return own


def _server_folder_name(pid: int, create_time: float) -> str:
    return f"{pid}-{round(create_time * 1000)}"  # the start time: a reused pid is another server


def metrics_page() -> bytes:
    """The Prometheus page of every process's metrics: the multiprocess files when the server gave its workers a
    folder for them (``bentoml serve`` does), else this process's registry."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return prometheus_client.generate_latest(registry)
    return prometheus_client.generate_latest()


class RequestMetrics:
    """ASGI middleware, the outermost of the service's: serves ``GET /metrics`` and counts every HTTP request by
    endpoint and status. A path the service does not serve is counted as ``endpoint="other"``, so a client
    cannot add series (and multiprocess files) by inventing paths, whether or not it holds a token.

    ``observe(endpoint, status, seconds)`` records one answered request. A 401 (refused by the token check, which
    logs nothing itself) is one INFO line to ``logger``, naming the method and the endpoint label, not the path."""

    def __init__(
        self,
        app,
        *,
        known_paths: Iterable[str],
        observe: Callable[[str, int, float], None],
        logger: logging.Logger | None = None,
        metrics_path: str = "/metrics",
    ) -> None:
        self.app = app
        self.known_paths = frozenset(known_paths)
        self.observe = observe
        self.logger = logger
        self.metrics_path = metrics_path

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == self.metrics_path and scope["method"] in ("GET", "HEAD"):
            body = await asyncio.to_thread(metrics_page)  # reads a file per process and metric kind
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", prometheus_client.CONTENT_TYPE_LATEST.encode()),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
            return
        endpoint = scope["path"] if scope["path"] in self.known_paths else OTHER_PATHS
        started = time.perf_counter()
        status = 500  # what the client sees when the application fails before it answers
        headers = scope["headers"]
        if len(headers) > MAX_HEADERS or sum(len(name) + len(value) for name, value in headers) > MAX_HEADER_BYTES:
            detail = f"at most {MAX_HEADERS} headers of {MAX_HEADER_BYTES} bytes in all"
            if self.logger is not None:
                self.logger.info("refused %s %s: 431 headers too large", scope["method"][:10], endpoint)
            await send_json(send, 431, "request header fields too large", detail)
            self.observe(endpoint, 431, time.perf_counter() - started)
            return

        async def counted_send(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counted_send)
        finally:
            self.observe(endpoint, status, time.perf_counter() - started)
            if status == 401 and self.logger is not None:
                self.logger.info("refused %s %s: 401 unauthorized", scope["method"][:10], endpoint)


class JsonBodies:
    """ASGI middleware for the prediction endpoints (``POST`` to ``paths``): the body must be ``application/json``
    (415), at most ``max_body_bytes`` (413), and arrive within ``body_seconds`` (408). The body is read here, in
    full, and handed on to the application as one message, so the application never waits on a slow client.

    Refusals are logged to ``logger`` at INFO, one line naming the path, the status and the reason: never the
    request's values."""

    def __init__(
        self,
        app,
        *,
        paths: Iterable[str],
        max_body_bytes: int,
        body_seconds: float,
        logger: logging.Logger,
    ) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.max_body_bytes = max_body_bytes
        self.body_seconds = body_seconds
        self.logger = logger

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])  # a repeated header: its last value, as Starlette reads it
        refusal = self._refuse_headers(headers)
        if refusal is None:
            body, refusal = await self._read_body(receive)
        if refusal is not None:
            status, error, detail = refusal
            self.logger.info("refused %s %s: %s %s: %s", scope["method"], scope["path"], status, error, detail)
            await send_json(send, status, error, detail)
            return

        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: a disconnect, when the client leaves

        await self.app(scope, replay, send)

    def _refuse_headers(self, headers: dict[bytes, bytes]) -> tuple[int, str, str] | None:
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        media_type, _, parameters = content_type.partition(";")
        charset = _parameter(parameters, "charset")
        if media_type.strip().lower() != "application/json" or charset not in (None, "utf-8", "utf8"):
            return (
                415,
                "unsupported media type",
                f"predictions take Content-Type: application/json (UTF-8), not {content_type[:100]!r}",
            )
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return 413, "body too large", f"a prediction body is at most {self.max_body_bytes} bytes"
        return None

    async def _read_body(self, receive) -> tuple[bytes, tuple[int, str, str] | None]:
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return b"", (400, "client disconnected", "the body ended before its Content-Length")
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        return b"", (413, "body too large", f"a prediction body is at most {self.max_body_bytes} bytes")
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks), None
        except TimeoutError:
            return b"", (408, "request timeout", f"the body did not arrive within {self.body_seconds:g} s")


def _parameter(parameters: str, name: str) -> str | None:
    for parameter in parameters.split(";"):
        key, _, value = parameter.partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"').lower()
    return None


class OneLineRefusals(logging.Filter):
    """A logging filter for BentoML's request-failure logger: a request refused by the typed request model
    (pydantic's ``ValidationError``, answered 400) becomes one INFO line naming the path and each error's field
    and kind, instead of an ERROR with a traceback that quotes the request's values. Any other failure passes
    as BentoML logs it: a real error keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            where = "; ".join(
                f"{_location(detail)} {detail['type']}"
                for detail in error.errors(include_input=False, include_context=False)[:10]
            )
            path, method = record.args if isinstance(record.args, tuple) and len(record.args) == 2 else ("?", "?")
            record.msg = "refused %s %s: 400 invalid request, %d error(s): %s"
            record.args = (method, path, error.error_count(), where[:1000])
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


# The logger BentoML's service app reports a failed request to (its http_app's log_exception). A logger's name,
# not an import: BentoML 1.4 has no public hook for how a refused request is logged, so the filter above is
# attached by that name; if a release renames it, the fuzz test's "no input value in the log" check fails.
BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"


def _location(detail: dict) -> str:
    """A validation error's place, as the schema names it: an unknown field's name is the client's text, so it
    is logged as ``(unknown field)``."""
    parts = [str(part) for part in detail["loc"]]
    if detail["type"] == "extra_forbidden" and parts:
        parts[-1] = "(unknown field)"
    return ".".join(parts) or "(body)"
