"""mlplatform.lib.serving.auth: the bearer-token middleware, through a real ASGI client."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from mlplatform.lib.serving.auth import BearerTokenAuth, token_matches


async def _ok_app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"through"})


def call(app, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            return await client.post(path, headers=headers or {})

    return asyncio.run(send())


class TestBearerTokenAuth:
    app = BearerTokenAuth(_ok_app, token="s3cret")

    def test_the_right_token_goes_through(self) -> None:
        response = call(self.app, "/predict", {"Authorization": "Bearer s3cret"})

        assert (response.status_code, response.text) == (200, "through")

    @pytest.mark.parametrize(
        ("headers", "detail"),
        [
            ({}, "no token: send Authorization: Bearer <token>"),
            ({"Authorization": "Bearer wrong"}, "a valid token is required"),
            ({"Authorization": "Basic s3cret"}, "a valid token is required"),
            ({"Authorization": "Bearer s3cret-and-more"}, "a valid token is required"),
        ],
    )
    def test_anything_else_is_401_with_a_json_body(self, headers: dict, detail: str) -> None:
        response = call(self.app, "/predict_batch", headers)

        assert response.status_code == 401
        assert response.json() == {"error": "unauthorized", "detail": detail}
        assert response.headers["www-authenticate"].startswith("Bearer")

    @pytest.mark.parametrize(
        "path", ["/livez", "/healthz", "/readyz", "/metrics", "/docs.json", "/", "/static_content/x.css"]
    )
    def test_health_metrics_and_docs_stay_open(self, path: str) -> None:
        assert call(self.app, path).status_code == 200

    def test_a_websocket_without_the_token_is_closed_before_the_application(self) -> None:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        async def receive() -> dict:
            return {"type": "websocket.connect"}

        asyncio.run(self.app({"type": "websocket", "path": "/predict", "headers": []}, receive, send))

        assert sent == [{"type": "websocket.close", "code": 1008}]

    def test_required_without_a_token_fails_closed(self) -> None:
        assert call(BearerTokenAuth(_ok_app, token=None), "/predict", {"Authorization": "Bearer "}).status_code == 401

    def test_switched_off_it_lets_everything_through(self) -> None:
        assert call(BearerTokenAuth(_ok_app, token=None, required=False), "/predict").status_code == 200

    def test_the_scheme_is_bearer_in_any_case_and_the_token_must_follow(self) -> None:
        assert token_matches("bearer s3cret", "s3cret")
        assert not token_matches(None, "s3cret")
        assert not token_matches("Bearer", "s3cret")
