"""The prediction server's HTTP connections, guarded before any request reaches the application (issue #14,
finding 5). ``guard.py``'s middlewares see a request only once its head (request line and headers) is parsed;
what a client can do before that is this module's:

- a head that does not arrive within ``head_seconds`` (a slow or stalled client, "slowloris") is answered ``408``
  and the connection closed; a connection that sends nothing at all is closed without an answer;
- a head larger than ``max_head_bytes`` is answered ``431`` as soon as that many bytes have arrived, instead of
  being read and parsed in full (a 64 MB header kept a worker busy for seconds);
- an ``Upgrade`` request (WebSocket, h2c, CONNECT) is answered as the plain HTTP request it also is, and its
  connection closed: the service speaks no other protocol, and the upgraded parser would ignore anything after;
  one that declares a body is refused with ``400``, because httptools hands the bytes after an Upgrade head to
  the new protocol, never to the request, and its answer would be to a request without its body.

A refusal is written, the sending side shut, and what the client goes on sending read and discarded for up to
``LINGER_SECONDS`` or ``LINGER_BYTES``: the staged close of RFC 9112 section 9.6 (nginx's ``lingering_close``).
Closing with unread bytes sends a reset: a client still writing its request then fails on its write, and one
whose kernel drops unread data on a reset (Windows) loses the answer. curl and httpx read the answer after a
failed write, so on Linux they saw it even before; a client that treats the failed write as the error did not.

BentoML 1.4 builds its workers' uvicorn configuration itself and sets none of this, so ``install`` names this
protocol as uvicorn's ``auto`` HTTP implementation in the worker process, which imports the service before it
starts uvicorn. The protocol is uvicorn's httptools one with those rules added; ``install`` refuses to run
against a uvicorn whose registry or httptools protocol it does not recognise, so the guard is never silently
lost in an upgrade (the slow-tier test ``serving/test_hostile.py`` checks it over HTTP, against ``bentoml
serve``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import ClassVar

from mlplatform.lib.serving import guard

# nginx's default buffers: a request line fits in 8 KiB, all the headers in 32 KiB (guard.MAX_HEADER_BYTES)
MAX_REQUEST_LINE_BYTES = 8 * 1024
MAX_HEAD_BYTES = MAX_REQUEST_LINE_BYTES + guard.MAX_HEADER_BYTES
# after a refusal, what a client still sends is read into nothing for this long, or this much, at most: enough
# for a client that overshot (a large header, a body behind an upgrade) to finish and read why; an attacker
# streaming a 64 MB header is cut off after one more mebibyte
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024
AUTO = "auto"
UVICORN_AUTO = "uvicorn.protocols.http.auto:AutoHTTPProtocol"

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # no httptools: install() says so, and the service does not start unguarded
    HttpToolsProtocol = None


class ConnectionGuardError(RuntimeError):
    """The installed uvicorn cannot be given the guarded protocol."""


if HttpToolsProtocol is not None:

    class GuardedHttpProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol with a deadline and a size limit on each request's head, and without
        protocol upgrades. Configure it by subclassing (``configured``): uvicorn builds one per connection.

        Bytes are counted from the chunk after the one in which a request begins, so at most ``max_head_bytes``
        plus two reads of the socket (256 KiB each) are parsed before a 431, and a head is never counted larger
        than it is: a valid request is not refused because a body or a pipelined request shared its read."""

        head_seconds: ClassVar[float] = 10.0
        max_head_bytes: ClassVar[int] = MAX_HEAD_BYTES
        refusal_logger: ClassVar[logging.Logger] = logging.getLogger(__name__)
        # called with (status, seconds the refused head took): the service counts it in its request metrics
        on_refusal: ClassVar[Callable[[int, float], None] | None] = None

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._reading_head = False  # from a request's first byte to its last header
            self._head_bytes = 0
            self._head_since = 0.0
            self._received = 0  # bytes read on this connection
            self._refused = False  # answered by this guard: the parser's later callbacks have no request to serve
            self._head_deadline = None
            self._discarded = 0  # bytes read and dropped after a refusal
            self._linger_deadline = None

        # the head deadline: armed while a head is awaited with some of it (or nothing yet) on the connection,
        # disarmed once the headers are complete; idle keep-alive connections are uvicorn's timeout_keep_alive's

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._head_since = time.monotonic()
            self._arm_head_deadline()

        def connection_lost(self, exc) -> None:
            self._disarm_head_deadline()
            if self._linger_deadline is not None:
                self._linger_deadline.cancel()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:  # read after a refusal (lingering, or while an earlier answer finishes): dropped
                self._discarded += len(data)
                if self._linger_deadline is not None and self._discarded > LINGER_BYTES:
                    self.transport.close()
                return
            self._received += len(data)
            if self._reading_head:
                self._head_bytes += len(data)
            super().data_received(data)
            if self.transport.is_closing():
                return
            if self._reading_head and self._head_bytes > self.max_head_bytes:
                self._refuse(
                    431, "request header fields too large", f"a request's head is at most {self.max_head_bytes} bytes"
                )
            elif self._head_deadline is None and (self._reading_head or self._idle()):
                # part of a head (or bytes that begin none, such as blank lines) on a connection with no request
                # in flight: it must become a request within the deadline
                self._head_since = time.monotonic()
                self._arm_head_deadline()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._reading_head = True
            self._head_bytes = 0  # the bytes of this read before the request began are not its head's

        def on_headers_complete(self) -> None:
            self._reading_head = False
            self._disarm_head_deadline()
            if self.parser.should_upgrade() and self._declares_body():
                # httptools takes the bytes after an Upgrade head for the new protocol's, never as this
                # request's body: answering would mean answering a request without the body its client sent
                self._refuse(
                    400,
                    "upgrade not supported",
                    "the service speaks HTTP/1.1 only: send the request without Connection: upgrade (curl: --http1.1)",
                )
                return
            super().on_headers_complete()
            if self.parser.should_upgrade():
                self.cycle.keep_alive = False  # the parser reads nothing after an upgrade: answer, then close

        def on_body(self, body: bytes) -> None:
            if not self._refused:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if not self._refused:
                super().on_message_complete()

        def _declares_body(self) -> bool:
            for name, value in self.headers:
                if name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"", b"0")):
                    return True
            return False

        def _should_upgrade_to_ws(self) -> bool:
            return False  # the service has no WebSocket endpoint

        def _unsupported_upgrade_warning(self) -> None:
            pass  # an Upgrade header is the client's offer, which HTTP lets a server ignore: nothing to warn about

        def _idle(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm_head_deadline(self) -> None:
            self._head_deadline = self.loop.call_later(self.head_seconds, self._head_timed_out)

        def _disarm_head_deadline(self) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
                self._head_deadline = None

        def _head_timed_out(self) -> None:
            self._head_deadline = None
            if self.transport.is_closing():
                return
            if not self._received:  # a connection opened and never used: close it, as an idle keep-alive
                self.transport.close()
                return
            if not self._idle():  # a pipelined head behind a request still being answered: its clock waits
                self._arm_head_deadline()
                return
            self._refuse(408, "request timeout", f"the request's headers did not arrive within {self.head_seconds:g} s")

        def _refuse(self, status: int, error: str, detail: str) -> None:
            """Answer ``status`` with the service's JSON error, close the connection, and log one line: the
            head is incomplete, so there is no path or value to name. Behind a request still being answered
            (pipelining), the connection is closed after that answer instead, and parses nothing more."""
            self._reading_head, self._refused = False, True
            self._disarm_head_deadline()
            self.refusal_logger.info(
                "refused a connection's request: %s %s: %s (%d bytes read)", status, error, detail, self._received
            )
            if self.on_refusal is not None:
                self.on_refusal(status, time.monotonic() - self._head_since)
            if not self._idle():
                # reading goes on, into nothing (data_received): a close with unread bytes would be a reset,
                # which can make the client lose the answer it is owed
                self.cycle.keep_alive = False
                return
            body = json.dumps({"error": error, "detail": detail}).encode()
            head = [
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
                "content-type: application/json",
                f"content-length: {len(body)}",
                "connection: close",
            ]
            self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            self._close_lingering()

        def _close_lingering(self) -> None:
            """Shut the sending side once the answer is out, then close when the client does (``eof_received``
            returns nothing, so the transport closes), or after ``LINGER_SECONDS``, or past ``LINGER_BYTES``."""
            if not self.transport.can_write_eof():
                self.transport.close()
                return
            self.transport.write_eof()
            self._linger_deadline = self.loop.call_later(LINGER_SECONDS, self.transport.close)

else:
    GuardedHttpProtocol = None


def configured(
    *,
    head_seconds: float,
    max_head_bytes: int = MAX_HEAD_BYTES,
    logger: logging.Logger | None = None,
    on_refusal: Callable[[int, float], None] | None = None,
) -> type:
    """A ``GuardedHttpProtocol`` with these settings, for ``uvicorn.Config(http=...)``."""
    if GuardedHttpProtocol is None:
        raise ConnectionGuardError("the prediction server needs httptools (uvicorn[standard]) for its connection guard")
    settings = {"head_seconds": head_seconds, "max_head_bytes": max_head_bytes}
    if logger is not None:
        settings["refusal_logger"] = logger
    if on_refusal is not None:
        settings["on_refusal"] = staticmethod(on_refusal)
    return type("ConfiguredGuardedHttpProtocol", (GuardedHttpProtocol,), settings)


# the protocol install() gave this process's uvicorn, by the name uvicorn imports it from
INSTALLED: type | None = None


def install(**settings) -> type:
    """Make the guarded protocol (``configured(**settings)``) this process's uvicorn ``auto`` HTTP protocol,
    the one a ``bentoml serve`` worker's server uses; call it before the server starts (at the service's
    import). Raises ``ConnectionGuardError`` when uvicorn's registry is not the one this was written against."""
    global INSTALLED
    from uvicorn import config

    ours = f"{__name__}:INSTALLED"
    if config.HTTP_PROTOCOLS.get(AUTO) not in (UVICORN_AUTO, ours):
        raise ConnectionGuardError(
            f"uvicorn's {AUTO!r} HTTP protocol is {config.HTTP_PROTOCOLS.get(AUTO)!r}, not {UVICORN_AUTO!r}: "
            "the connection guard (mlplatform/lib/serving/connections.py) must be checked against this uvicorn"
        )
    INSTALLED = configured(**settings)
    config.HTTP_PROTOCOLS[AUTO] = ours
    return INSTALLED
