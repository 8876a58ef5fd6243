"""The served bento under hostile input, over real HTTP (issue #14): every case answers 4xx, or 2xx where it is
valid, never 5xx; the server stays ready; unknown paths add no series to /metrics; no request's values reach
the server's log. The cases are the attacks an outsider tries (auth tricks, path tricks, bodies of every wrong
type, size and encoding, extreme numbers) and the faults of issue #14's findings, each named by its id."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from mlplatform.lib.serving import connections, serving
from mlplatform.lib.serving.serving import request_rows
from mlplatform_tests.serving.conftest import TOKEN, ServedBento, serve_bento
from mlplatform_tests.serving.models import SavedModel

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}
# Values no valid row holds and no log line may quote: each case's body carries one of these
MARKER_NUMBER = 41.5371937
MARKER_TEXT = "Atlantis-q7Zr"
WEBSOCKET = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "eA==",
}
H2C = {"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c", "HTTP2-Settings": "AAMAAABkAAQAAP__"}


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    expected: set[int]
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=lambda: {**AUTH, **JSON})
    body: bytes | None = None


def row(penguins_model: SavedModel, **change: object) -> dict:
    return {**request_rows(penguins_model.holdout, penguins_model.schema)[0], **change}


def dumps(value: object) -> bytes:
    return json.dumps(value).encode()


def cases(penguins_model: SavedModel) -> list[Case]:
    good = row(penguins_model)
    marked = row(penguins_model, bill_length_mm=MARKER_NUMBER)  # a valid row: answered, but never logged as text
    both = ("/predict", "/predict_batch")

    def body_for(path: str, one: dict) -> bytes:
        return dumps(one if path == "/predict" else {"rows": [one]})

    found: list[Case] = []
    # valid requests, to see that the rules below refuse only what they should
    for path in both:
        found += [
            Case(f"valid {path}", path, {200}, body=body_for(path, marked)),
            Case(
                f"valid with charset {path}",
                path,
                {200},
                headers={**AUTH, "Content-Type": "application/json; charset=utf-8"},
                body=body_for(path, good),
            ),
            Case(f"all nulls {path}", path, {200}, body=body_for(path, dict.fromkeys(good))),
            Case(
                f"integers for floats {path}", path, {200}, body=body_for(path, row(penguins_model, body_mass_g=4000))
            ),
        ]
    # auth tricks: always 401
    for path in both:
        for name, headers, url_tail in [
            ("no token", JSON, ""),
            ("wrong token", {**JSON, "Authorization": "Bearer nope"}, ""),
            ("token in query", JSON, f"?token={TOKEN}"),
            ("token in cookie", {**JSON, "Cookie": f"token={TOKEN}"}, ""),
            ("token in another header", {**JSON, "X-API-Key": TOKEN}, ""),
            ("basic scheme", {**JSON, "Authorization": f"Basic {TOKEN}"}, ""),
            ("token prefix", {**JSON, "Authorization": f"Bearer {TOKEN[:-1]}"}, ""),
            ("token with suffix", {**JSON, "Authorization": f"Bearer {TOKEN}x"}, ""),
            ("empty bearer", {**JSON, "Authorization": "Bearer "}, ""),
        ]:
            found.append(Case(f"{name} {path}", path + url_tail, {401}, headers=headers, body=body_for(path, marked)))
    # path tricks: 401 without a token, 404/405 with one, never the prediction behind it
    for path in [
        "/predict/",
        "//predict",
        "/PREDICT",
        "/predict%2F",
        "/./predict",
        "/../predict",
        "/predict;x",
        "/%70redict",
        "/static_content/../predict",
        "/assets/..%2Fpredict",
        "/docs.json/../predict",
    ]:
        found.append(Case(f"path {path} without token", path, {401, 404, 405}, headers=JSON, body=dumps(marked)))
        # a trailing slash is redirected (307) to the path without it, which needs the token again
        found.append(Case(f"path {path} with token", path, {200, 307, 404, 405}, body=dumps(marked)))
    # finding 1 and 2: bodies that are not JSON: 415, whatever the form
    for path in both:
        for name, content_type, body in [
            ("multipart with boundary", "multipart/form-data; boundary=x", b"--x\r\n\r\n--x--"),
            ("multipart without boundary", "multipart/form-data", b"--x\r\n\r\n--x--"),
            ("urlencoded form", "application/x-www-form-urlencoded", b"bill_length_mm=+41.5+&island=Dream"),
            ("text/plain json", "text/plain", body_for(path, marked)),
            ("no content type", None, body_for(path, marked)),
            ("pickle", "application/vnd.bentoml+pickle", b"\x80\x04N."),
            ("latin-1 json", "application/json; charset=latin-1", body_for(path, marked)),
            ("xml", "application/xml", b"<row/>"),
        ]:
            headers = {**AUTH} | ({"Content-Type": content_type} if content_type else {})
            found.append(Case(f"{name} {path}", path, {415}, headers=headers, body=body))
    # JSON that is not a valid row: 400 naming the field (the typed request), 422 for what the model cannot answer
    for path in both:
        for name, value, status in [
            ("NaN", b"NaN", 400),
            ("Infinity", b"Infinity", 400),
            ("-Infinity", b"-Infinity", 400),
            ("1e309", b"1e309", 400),
            ("string number", dumps(" 41.5 "), 400),
            ("boolean number", b"true", 400),
            ("object number", dumps({"v": MARKER_NUMBER}), 400),
            ("1.7e308", b"1.7e308", 422),
            ("-1.7e308", b"-1.7e308", 422),
            ("far outside the training range", b"1e7", 422),
        ]:
            text = body_for(path, row(penguins_model, bill_length_mm=0.0)).replace(b"0.0", value, 1)
            found.append(Case(f"{name} {path}", path, {status}, body=text))
        found += [
            Case(f"unknown category {path}", path, {400}, body=body_for(path, row(penguins_model, island=MARKER_TEXT))),
            Case(f"category case {path}", path, {400}, body=body_for(path, row(penguins_model, island="dream"))),
            Case(f"number as category {path}", path, {400}, body=body_for(path, row(penguins_model, sex=1))),
            Case(
                f"long category {path}",
                path,
                {400},
                body=body_for(path, row(penguins_model, island=MARKER_TEXT * 50_000)),
            ),
            Case(f"extra field {path}", path, {400}, body=body_for(path, {**marked, MARKER_TEXT: 1})),
            Case(
                f"missing field {path}",
                path,
                {400},
                body=body_for(path, {k: v for k, v in marked.items() if k != "island"}),
            ),
            Case(f"invalid json {path}", path, {400}, body=b'{"bill_length_mm": 41.5371937,'),
            Case(f"not utf-8 {path}", path, {400}, body=b'{"island": "\xff\xfe' + MARKER_TEXT.encode() + b'"}'),
            Case(f"BOM {path}", path, {400, 200}, body=b"\xef\xbb\xbf" + body_for(path, good)),
            Case(f"empty body {path}", path, {400}, body=b""),
            Case(f"json null {path}", path, {400}, body=b"null"),
            Case(f"json list {path}", path, {400}, body=dumps([marked])),
            Case(f"json string {path}", path, {400}, body=dumps(MARKER_TEXT)),
            Case(f"deep nesting {path}", path, {400}, body=b"[" * 100_000 + b"]" * 100_000),
            Case(f"deep object {path}", path, {400}, body=b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
            Case(f"10 MB body {path}", path, {413}, body=b'{"rows": [' + b" " * 10_000_000 + b"]}"),
            Case(f"many keys {path}", path, {400}, body=dumps({f"k{i}": MARKER_NUMBER for i in range(20_000)})),
        ]
    found += [
        Case("10,001 rows", "/predict_batch", {400}, body=dumps({"rows": [marked] * (serving.MAX_REQUEST_ROWS + 1)})),
        Case("10,000 rows", "/predict_batch", {200}, body=dumps({"rows": [good] * serving.MAX_REQUEST_ROWS})),
        Case("no rows", "/predict_batch", {200}, body=dumps({"rows": []})),
        Case("rows not a list", "/predict_batch", {400}, body=dumps({"rows": marked})),
        Case(
            "one bad row among good",
            "/predict_batch",
            {400},
            body=dumps({"rows": [good, row(penguins_model, island=MARKER_TEXT)]}),
        ),
        Case(
            "one far row among good",
            "/predict_batch",
            {422},
            body=dumps({"rows": [good, row(penguins_model, body_mass_g=1e12)]}),
        ),
    ]
    # methods and headers
    for path in both:
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            found.append(Case(f"{method} {path}", path, {401, 405} if method != "GET" else {405}, method=method))
    found += [
        Case(
            "many headers",
            "/predict",
            {431},
            headers={**AUTH, **JSON, **{f"X-H{i}": "v" for i in range(500)}},
            body=dumps(good),
        ),
        Case(
            "large header",
            "/predict",
            {431},
            headers={**AUTH, **JSON, "X-Big": "v" * 60_000},
            body=dumps(good),
        ),
        Case(
            "gzip body",
            "/predict",
            {400},
            headers={**AUTH, **JSON, "Content-Encoding": "gzip"},
            body=b"\x1f\x8b\x08\x00" + MARKER_TEXT.encode(),
        ),
        Case(
            "bad content-length",
            "/predict",
            {400, 413},
            headers={**AUTH, **JSON, "Content-Length": "-1"},
            body=dumps(good),
        ),
        Case("unknown path with token", f"/{MARKER_TEXT}", {404}, method="GET"),
        # finding 5: upgrades are answered as plain HTTP; one with a body cannot be (its parser keeps the body)
        Case("websocket upgrade of a GET", "/readyz", {200}, method="GET", headers={**WEBSOCKET}),
        Case(
            "websocket upgrade with a body", "/predict", {400}, headers={**AUTH, **JSON, **WEBSOCKET}, body=dumps(good)
        ),
        Case("h2c upgrade with a body", "/predict", {400}, headers={**AUTH, **JSON, **H2C}, body=dumps(good)),
    ]
    return found


def send(url: str, case: Case) -> int:
    """The case as raw HTTP/1.1 on a socket of its own (an HTTP client would refuse to send some of them, a bad
    Content-Length or a header value with a trailing space); the answer's status."""
    host, port = url.removeprefix("http://").split(":")
    head = [f"{case.method} {case.path} HTTP/1.1", f"Host: {host}"]
    head += [] if "Connection" in case.headers else ["Connection: close"]
    head += [f"{name}: {value}" for name, value in case.headers.items()]
    if case.body is not None and "Content-Length" not in case.headers:
        head.append(f"Content-Length: {len(case.body)}")
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # answered before the body was all sent
            connection.sendall("\r\n".join(head).encode() + b"\r\n\r\n" + (case.body or b""))
        answer = b""
        while b"\r\n" not in answer:
            chunk = connection.recv(4096)
            if not chunk:
                raise ConnectionError(f"{case.name}: the connection closed without an answer")
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def series(metrics: str) -> set[str]:
    """Each sample's name and labels, without its value: what a new series adds."""
    return {line.rsplit(" ", 1)[0] for line in metrics.splitlines() if line and not line.startswith("#")}


def test_every_hostile_case_answers_4xx_never_5xx(served_bento: ServedBento, penguins_model: SavedModel) -> None:
    all_cases = cases(penguins_model)
    assert len(all_cases) >= 80 and len({case.name for case in all_cases}) == len(all_cases)

    wrong = {}
    for case in all_cases:
        try:
            status = send(served_bento.url, case)
        except OSError as error:  # a server that drops the connection answers nothing: a failure too
            status = f"no answer: {error!r}"
        if status not in case.expected:
            wrong[case.name] = (status, sorted(case.expected))
        assert httpx.get(served_bento.url + "/readyz", timeout=30).status_code == 200, f"not ready after {case.name}"

    assert wrong == {}


def test_unknown_paths_add_no_metric_series(served_bento: ServedBento) -> None:
    def invent(client: httpx.Client, count: int) -> None:
        for _ in range(count):
            path = f"/{secrets.token_hex(6)}/{secrets.token_hex(4)}"
            client.post(path, json={})
            client.get(path, headers=AUTH)

    with httpx.Client(base_url=served_bento.url, timeout=30) as client:
        invent(client, 5)  # the "other" series exist from here on
        before = client.get("/metrics").text
        invent(client, 200)
        after = client.get("/metrics").text

    assert series(after) == series(before)
    assert 'endpoint="other"' in after


def test_refusals_are_one_line_without_the_request_s_values(
    served_bento: ServedBento, penguins_model: SavedModel
) -> None:
    """Every refused case of the fuzz test, sent here again, then the server's whole log read: a refusal is an
    INFO line naming the path and the status, and no line holds a value of any request."""
    refused = [case for case in cases(penguins_model) if not case.expected & {200, 401, 404, 405}]
    last = Case("last", "/predict", {415}, headers={**AUTH, "Content-Type": "application/x-last-case"}, body=b"")
    statuses = {case.name: send(served_bento.url, case) for case in [*refused, last]}
    assert all(400 <= status < 500 for status in statuses.values()), statuses

    def refusal_lines() -> list[str]:
        log = served_bento.server.log_path.read_text(errors="replace")
        return [line for line in log.splitlines() if "refused POST /predict" in line]

    deadline = time.monotonic() + 30  # the workers' output reaches the log through the process manager's pipes
    while time.monotonic() < deadline and not any("x-last-case" in line for line in refusal_lines()):
        time.sleep(0.2)

    log = served_bento.server.log_path.read_text(errors="replace")
    assert str(MARKER_NUMBER) not in log and MARKER_TEXT not in log
    assert "Traceback" not in log and "input_value" not in log and "[ERROR]" not in log
    logged = {
        int(m.group(1)) for line in refusal_lines() if (m := re.search(r"refused POST /predict\S*: (\d+) ", line))
    }
    assert set(statuses.values()) == {400, 413, 415, 422, 431} and {400, 413, 415, 422} <= logged

    unauthorized = Case("unauthorized", f"/{MARKER_TEXT}", {401}, headers=JSON, body=dumps(MARKER_TEXT))
    assert send(served_bento.url, unauthorized) == 401
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "refused POST other: 401" not in served_bento.server.log_path.read_text():
        time.sleep(0.2)
    log = served_bento.server.log_path.read_text(errors="replace")
    assert "refused POST other: 401 unauthorized" in log and MARKER_TEXT not in log
    assert all(" [INFO] " in line or '"level":"INFO"' in line for line in refusal_lines())


def test_non_finite_model_output_is_422_naming_the_inputs(
    served_bento: ServedBento, penguins_model: SavedModel
) -> None:
    body = {"rows": [row(penguins_model), row(penguins_model, body_mass_g=1.7e308, flipper_length_mm=-1.7e308)]}

    response = httpx.post(served_bento.url + "/predict_batch", json=body, headers=AUTH, timeout=30)

    assert response.status_code == 422
    assert response.json()["error"] == "unanswerable input"
    assert [(e["loc"], e["type"]) for e in response.json()["detail"]] == [
        (["rows", 1, "flipper_length_mm"], "far_outside_training_range"),
        (["rows", 1, "body_mass_g"], "far_outside_training_range"),
    ]


def test_a_stalled_body_is_408_and_a_full_queue_503_with_retry_after(
    bento_tag: str, penguins_model: SavedModel, tmp_path: Path
) -> None:
    """A server with a one-second body deadline and room for a single waiting row."""
    good = row(penguins_model)
    with serve_bento(
        bento_tag, tmp_path, MLPLATFORM_API_TOKEN=TOKEN, MLPLATFORM_BODY_SECONDS="1", MLPLATFORM_MAX_QUEUED_ROWS="1"
    ) as server:
        server.wait_ready()
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as stalled:
            stalled.sendall(
                f"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode()
            )
            answer = stalled.recv(65536).decode()
        assert answer.startswith("HTTP/1.1 408 ")

        async def flood() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=60) as client:
                return await asyncio.gather(*(client.post("/predict", json=good) for _ in range(200)))

        responses = asyncio.run(flood())
        metrics = httpx.get(server.url + "/metrics", timeout=30).text

    statuses = {r.status_code for r in responses}
    assert statuses == {200, 503}
    overloaded = [r for r in responses if r.status_code == 503]
    assert {r.headers["Retry-After"] for r in overloaded} == {"1"}
    count = re.search(r'mlplatform_refused_requests_total\{[^}]*reason="overloaded"\} (\S+)', metrics)
    assert count is not None and float(count.group(1)) == len(overloaded)


def test_an_idle_keep_alive_connection_is_closed_by_the_server(served_bento: ServedBento) -> None:
    host, port = served_bento.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        connection.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")  # HTTP/1.1: keep-alive unless closed
        received = b""
        while chunk := connection.recv(4096):  # until the server closes it (after 5 s idle), well before 60 s
            received += chunk

    assert received.startswith(b"HTTP/1.1 200 ") and received.count(b"HTTP/1.1") == 1


def test_slow_and_huge_heads_are_refused_before_they_are_parsed(served_bento: ServedBento) -> None:
    """Finding 5: a head that never finishes is 408 after MLPLATFORM_HEADER_SECONDS (10 s), not held open; a
    64 MB header is refused after a few hundred KiB, not parsed for seconds; both are counted and logged."""
    host, port = served_bento.url.removeprefix("http://").split(":")
    address = (host, int(port))
    huge = 64 * 1024 * 1024
    with socket.create_connection(address, timeout=60) as unfinished, socket.create_connection(address) as big:
        unfinished.sendall(f"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n".encode())
        started = time.monotonic()

        sent = 0
        with contextlib.suppress(OSError):  # reset or broken pipe: the server closed it mid-header
            big.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            while sent < huge:
                big.sendall(b"a" * 65536)
                sent += 65536
        # what the client could send is what the server read plus what the kernel buffered between them (a
        # send buffer of up to 4 MiB and a receive buffer that grows as the server reads): the log has the first
        assert sent < huge / 4, f"{sent} bytes of a {huge}-byte header were accepted before the refusal"
        assert httpx.get(served_bento.url + "/readyz", timeout=30).status_code == 200

        answer = b""
        while chunk := unfinished.recv(4096):
            answer += chunk
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ") and b'"error": "request timeout"' in answer
    assert 9 < waited < 30

    def counted(status: int) -> float:
        metrics = httpx.get(served_bento.url + "/metrics", timeout=30).text
        found = re.search(
            rf'mlplatform_http_requests_total{{[^}}]*endpoint="other",[^}}]*status="{status}"}} (\S+)', metrics
        )
        return float(found.group(1)) if found else 0.0

    assert counted(408) >= 1 and counted(431) >= 1
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and "refused a connection's request: 408" not in served_bento.server.log_path.read_text()
    ):
        time.sleep(0.2)
    log = served_bento.server.log_path.read_text(errors="replace")
    assert "refused a connection's request: 408 request timeout" in log
    refused = re.search(
        r"refused a connection's request: 431 request header fields too large: .* \((\d+) bytes read\)", log
    )
    # at most the limit plus the read in which the request began and the one that crossed it (256 KiB each)
    assert refused is not None and int(refused.group(1)) <= connections.MAX_HEAD_BYTES + 2 * 256 * 1024, refused
    assert "aaaaaaaa" not in log
