"""The prediction service's authentication: a bearer token, checked by an ASGI middleware in front of the
application, so that a request without it reaches no BentoML code beyond the middlewares before this one."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from mlplatform.lib.serving.guard import send_json

# Paths a caller may use without a token: health, readiness, metrics and the generated docs.
OPEN_PATHS = frozenset({"/", "/livez", "/healthz", "/readyz", "/metrics", "/docs.json", "/schema.json"})
OPEN_PREFIXES = ("/static_content/", "/assets/")


def token_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>``, compared in constant time."""
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


class BearerTokenAuth:
    """ASGI middleware: every path (HTTP or WebSocket) needs ``Authorization: Bearer <token>`` except health,
    readiness, metrics and the docs. Without a valid token the answer is 401 with a JSON body; the application behind
    never sees the request. ``required=False`` switches authentication off; required without a token, every
    protected path answers 401 (fail closed)."""

    def __init__(self, app, *, token: str | None, required: bool = True, open_paths: Iterable[str] = OPEN_PATHS):
        self.app = app
        self.token = token
        self.required = required
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan" or not self.required or self._is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        authorization = next((value for key, value in scope["headers"] if key == b"authorization"), b"")
        if self.token and token_matches(authorization.decode("latin-1"), self.token):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":  # closing before accepting answers the handshake with a 403
            await send({"type": "websocket.close", "code": 1008})
            return
        reason = "a valid token is required" if authorization else "no token: send Authorization: Bearer <token>"
        await send_json(send, 401, "unauthorized", reason, [(b"www-authenticate", b'Bearer realm="predictions"')])

    def _is_open(self, path: str) -> bool:
        return path in self.open_paths or path.startswith(OPEN_PREFIXES)
