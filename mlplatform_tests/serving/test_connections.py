"""The connection guard (lib/serving/connections.py) in a real uvicorn server on a loopback port, spoken to over
raw sockets: a head that is too slow gets 408, one that is too large 431 before it is read in full, a valid
request is never refused for the company its bytes keep, and Upgrade requests are answered as plain HTTP.
The same rules are checked against ``bentoml serve`` in test_hostile.py (slow tier)."""

from __future__ import annotations

import asyncio
import json
import logging
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import uvicorn

from mlplatform.lib.serving import connections
from mlplatform_tests.servers import free_port

HEAD_SECONDS = 1.0
MAX_HEAD_BYTES = 4096


async def echo(scope, receive, send) -> None:
    """Answers 200 with the request's path and body length, after reading the whole body."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(2 * HEAD_SECONDS)
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = json.dumps({"path": scope["path"], "body_bytes": size}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class Server:
    port: int
    refusals: list[tuple[int, float]] = field(default_factory=list)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server(free_port())
    protocol = connections.configured(
        head_seconds=HEAD_SECONDS,
        max_head_bytes=MAX_HEAD_BYTES,
        on_refusal=lambda status, seconds: running.refusals.append((status, seconds)),
    )
    config = uvicorn.Config(
        echo, port=running.port, http=protocol, lifespan="off", log_config=None, timeout_keep_alive=5
    )
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uvicorn_server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield running
    uvicorn_server.should_exit = True
    thread.join(timeout=10)


def request(path: str = "/predict", *, body: bytes = b"", headers: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def read_all(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def responses(data: bytes) -> list[tuple[int, bytes]]:
    """The complete responses at the start of ``data``, as (status, body), in order."""
    found = []
    while b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:"))
        if len(rest) < length:
            break
        found.append((int(lines[0].split(b" ", 2)[1]), rest[:length]))
        data = rest[length:]
    return found


def read_responses(connection: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """The next ``count`` responses on a connection the server keeps open."""
    data = b""
    while len(found := responses(data)) < count:
        chunk = connection.recv(65536)
        assert chunk, f"the server closed the connection after {len(found)} of {count} responses"
        data += chunk
    return found


def test_a_valid_request_is_answered_and_its_connection_kept(server: Server) -> None:
    with server.connect() as connection:
        connection.sendall(request(body=b"{}"))
        connection.sendall(request("/second", body=b"[1]"))
        (first, second) = read_responses(connection, 2)
    assert first == (200, b'{"path": "/predict", "body_bytes": 2}')
    assert second == (200, b'{"path": "/second", "body_bytes": 3}')
    assert server.refusals == []


def test_a_head_that_never_finishes_is_408_after_the_deadline(server: Server) -> None:
    started = time.monotonic()  # the deadline runs from the connection's start, at most this late
    with server.connect() as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        answer = read_all(connection)
        waited = time.monotonic() - started

    ((status, body),) = responses(answer)
    assert status == 408 and json.loads(body)["error"] == "request timeout"
    assert b"connection: close" in answer
    assert HEAD_SECONDS <= waited < HEAD_SECONDS + 2
    assert [refused for refused, _ in server.refusals] == [408]


def test_a_head_trickled_a_byte_at_a_time_is_408_not_held_open(server: Server) -> None:
    """The slowloris: each byte arrives well within any idle timeout, and the head still never ends."""
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    with server.connect() as connection:
        started = time.monotonic()
        for byte in head:
            if select.select([connection], [], [], 0)[0]:  # answered: a client that went on would be reset
                break
            connection.sendall(bytes([byte]))
            time.sleep(0.05)
        answer = read_all(connection)
    assert responses(answer)[0][0] == 408
    assert time.monotonic() - started < HEAD_SECONDS + 2


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(server: Server) -> None:
    started = time.monotonic()  # the deadline runs from the connection's start, at most this late
    with server.connect() as connection:
        assert read_all(connection) == b""
    assert HEAD_SECONDS <= time.monotonic() - started < HEAD_SECONDS + 2
    assert server.refusals == []


def test_blank_lines_after_a_response_do_not_hold_the_connection(server: Server) -> None:
    """Bytes that begin no request cancel uvicorn's keep-alive timer; the head deadline takes over."""
    with server.connect() as connection:
        connection.sendall(request(body=b"{}"))
        assert read_responses(connection, 1)[0][0] == 200
        started = time.monotonic()
        while not select.select([connection], [], [], 0)[0]:  # blank lines until the server answers
            assert time.monotonic() - started < HEAD_SECONDS + 2, "the connection is still held"
            connection.sendall(b"\r\n")
            time.sleep(0.05)
        assert [status for status, _ in responses(read_all(connection))] == [408]


def test_an_oversized_head_is_431_before_it_is_read_in_full(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=connections.__name__)
    huge = 64 * 1024 * 1024
    sent = 0
    with server.connect() as connection:
        connection.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"a" * 65536
        with pytest.raises(OSError):  # reset or broken pipe: the server closed the connection mid-header
            while sent < huge:
                connection.sendall(chunk)
                sent += len(chunk)
    assert sent < huge / 4, f"{sent} bytes of a {huge}-byte header were accepted before the refusal"
    assert [status for status, _ in server.refusals] == [431]
    (line,) = [r.getMessage() for r in caplog.records if "refused a connection's request: 431" in r.getMessage()]
    read = int(line.rsplit("(", 1)[1].split()[0])
    assert read <= MAX_HEAD_BYTES + 2 * 256 * 1024, line  # the limit, and at most the two reads around it


def test_a_client_that_stops_after_an_oversized_head_reads_the_431(server: Server) -> None:
    with server.connect() as connection:
        connection.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3 * MAX_HEAD_BYTES // 1024):
            time.sleep(0.01)  # separate reads: the guard counts from the read after the one the request began in
            try:
                connection.sendall(b"X-Pad: " + b"p" * 1015 + b"\r\n")
            except OSError:
                break
        answer = read_all(connection)
    ((status, payload),) = responses(answer)
    assert status == 431 and json.loads(payload) == {
        "error": "request header fields too large",
        "detail": f"a request's head is at most {MAX_HEAD_BYTES} bytes",
    }


def test_a_client_still_sending_its_oversized_head_reads_the_431_not_a_reset(server: Server) -> None:
    """A client that writes its whole request before it reads: the server reads on, into nothing, after its
    answer, so the client's writes succeed and it reads the 431 (closed at once, the writes were reset)."""
    with server.connect() as connection:
        connection.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.05)  # the request begins in a read of its own: the guard counts from the next one
        for _ in range(64):  # 512 KiB of headers: far past the limit, within what the server lingers for
            connection.sendall(b"X-Pad: " + b"p" * 8183 + b"\r\n")
        answer = read_all(connection)
    assert [status for status, _ in responses(answer)] == [431]
    assert [status for status, _ in server.refusals] == [431]


def test_after_a_refusal_a_client_that_goes_on_sending_is_closed_within_the_linger(server: Server) -> None:
    with server.connect() as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        time.sleep(HEAD_SECONDS + 0.5)  # refused with 408 half a second ago
        started = time.monotonic()
        with pytest.raises(OSError):  # a reset, once the server stops reading
            while time.monotonic() - started < connections.LINGER_SECONDS + 5:
                connection.sendall(b"X-More: 1\r\n")
                time.sleep(0.05)
    assert connections.LINGER_SECONDS - 1 < time.monotonic() - started < connections.LINGER_SECONDS + 1
    assert [status for status, _ in server.refusals] == [408]


def test_a_head_just_under_the_limit_in_small_pieces_is_answered(server: Server) -> None:
    data = request(body=b"{}", headers=f"X-Pad: {'p' * (MAX_HEAD_BYTES - 200)}\r\n")
    with server.connect() as connection:
        for start in range(0, len(data), 100):
            connection.sendall(data[start : start + 100])
        assert read_responses(connection, 1)[0][0] == 200
    assert server.refusals == []


def test_a_large_body_and_a_pipelined_request_in_one_read_are_not_a_large_head(server: Server) -> None:
    body = b"1" * (20 * MAX_HEAD_BYTES)
    with server.connect() as connection:
        connection.sendall(request(body=body) + request("/next", body=b"{}") + request("/last", body=body))
        answers = read_responses(connection, 3)
    assert [status for status, _ in answers] == [200, 200, 200]
    assert [json.loads(payload)["body_bytes"] for _, payload in answers] == [len(body), 2, len(body)]
    assert server.refusals == []


WEBSOCKET = b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: eA==\r\n"
H2C = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"


@pytest.mark.parametrize("upgrade", [WEBSOCKET, H2C], ids=["websocket", "h2c"])
def test_an_upgrade_request_is_answered_as_http_and_its_connection_closed(server: Server, upgrade: bytes) -> None:
    with server.connect() as connection:
        connection.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n" + upgrade + b"\r\n")
        started = time.monotonic()
        answer = read_all(connection)
    assert responses(answer) == [(200, b'{"path": "/readyz", "body_bytes": 0}')]
    assert time.monotonic() - started < HEAD_SECONDS


@pytest.mark.parametrize("upgrade", [WEBSOCKET, H2C], ids=["websocket", "h2c"])
@pytest.mark.parametrize("framing", ["Content-Length: 8", "Transfer-Encoding: chunked"])
def test_an_upgrade_request_with_a_body_is_400_not_answered_without_its_body(
    server: Server, upgrade: bytes, framing: str
) -> None:
    body = b'{"a": 1}' if framing.startswith("Content") else b'8\r\n{"a": 1}\r\n0\r\n\r\n'
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + upgrade
    with server.connect() as connection:
        connection.sendall(head + framing.encode() + b"\r\n\r\n" + body)
        started = time.monotonic()
        answer = read_all(connection)
    ((status, payload),) = responses(answer)
    assert status == 400 and "--http1.1" in json.loads(payload)["detail"]
    assert time.monotonic() - started < HEAD_SECONDS
    assert [refused for refused, _ in server.refusals] == [400]


def test_install_makes_the_guard_uvicorns_auto_protocol_in_its_process() -> None:
    """In a process of its own: install() changes uvicorn's registry for the whole process."""
    script = """
import uvicorn
from mlplatform.lib.serving import connections
protocol = connections.install(head_seconds=3.5)
config = uvicorn.Config(lambda scope, receive, send: None, http="auto")
config.load()
assert config.http_protocol_class is protocol, config.http_protocol_class
assert issubclass(protocol, connections.GuardedHttpProtocol) and protocol.head_seconds == 3.5
assert connections.install(head_seconds=1).head_seconds == 1  # again, as a second import of the service would
from uvicorn import config as uvicorn_config
uvicorn_config.HTTP_PROTOCOLS["auto"] = "somebody.else:Protocol"
try:
    connections.install(head_seconds=1)
except connections.ConnectionGuardError as error:
    print("refused:", error)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "refused: uvicorn's 'auto' HTTP protocol is 'somebody.else:Protocol'" in done.stdout


def test_a_pipelined_head_waits_for_the_answer_before_it_and_an_oversized_one_closes_after_it(server: Server) -> None:
    """A head behind a request still being answered is not answered in the middle of that answer: its deadline
    waits, and an oversized one ends the connection after the answer before it."""
    with server.connect() as connection:
        connection.sendall(request("/slow", body=b"{}") + b"POST /next HTTP/1.1\r\nHost: x\r\n")
        answers = read_all(connection)
    assert [status for status, _ in responses(answers)] == [200, 408]
    assert responses(answers)[0][1] == b'{"path": "/slow", "body_bytes": 2}'

    with server.connect() as connection:
        connection.sendall(request("/slow", body=b"{}") + b"GET /big HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3 * MAX_HEAD_BYTES // 1024):
            time.sleep(0.01)
            connection.sendall(b"X-Pad: " + b"p" * 1015 + b"\r\n")
        answers = read_all(connection)
    assert responses(answers) == [(200, b'{"path": "/slow", "body_bytes": 2}')]
    assert [status for status, _ in server.refusals] == [408, 431]
