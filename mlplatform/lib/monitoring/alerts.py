"""Alerts for a person: what went wrong, as Slack-compatible JSON POSTed to a webhook and as one JSON log line.

The payload is what a Slack incoming webhook takes (``text``, the notification's fallback, and ``blocks``, the
message); any other receiver gets the same JSON. Sending retries with backoff and never raises: an alert that
cannot be delivered is reported in its log line, and whatever raised it (a run, a sensor) carries on. No
secret goes out: the webhook's own URL is never part of a payload, a log line or an error, and every text is
redacted of the secrets the caller names, of credentials in URLs and of bearer tokens.

No Dagster here; ``mlplatform.defs.automation.alerts`` builds alerts from runs, checks and freshness.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Literal
from urllib.parse import urlsplit

import requests

Kind = Literal["run_failure", "check_failed", "freshness"]
Severity = Literal["error", "warning"]
REDACTED = "***"
# Slack's limits: a header holds 150 characters, a section's text 3,000, a field 2,000.
_HEADER, _SECTION, _FIELD = 150, 3000, 2000
_EMOJI = {"error": ":red_circle:", "warning": ":warning:"}
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")
_SECRET_PARAMETER = re.compile(r"(?i)\b((?:api[_-]?)?(?:token|password|passwd|secret|key))=([^&\s\"',;]+)")


@dataclass(frozen=True)
class Alert:
    """One thing a person should know about: a failed run, a failed check, a stale asset."""

    kind: Kind
    severity: Severity
    title: str  # one line: what happened
    details: str  # why, in as many lines as it takes
    run_id: str | None = None
    job: str | None = None
    asset: str | None = None
    check: str | None = None
    model_tag: str | None = None
    url: str | None = None  # the run (or the asset) in the Dagster UI

    def redacted(self, secrets: Iterable[str | None] = ()) -> Alert:
        """The same alert with every text stripped of ``secrets``, URL credentials and bearer tokens."""
        known = sorted({secret for secret in secrets if secret and len(secret) >= 4}, key=len, reverse=True)
        values = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, str) and field.name != "kind":
                values[field.name] = redact(value, known)
        return replace(self, **values)

    def payload(self) -> dict:
        """Slack's incoming-webhook JSON: ``text`` for notifications and receivers that read only that, and
        ``blocks``: a header, the details, and the run, asset, model and link as fields."""
        summary = f"{self.title}\n{self.details}"
        context = [
            (name, _escape(value))
            for name, value in (
                ("Run", self.run_id),
                ("Job", self.job),
                ("Asset", self.asset),
                ("Check", self.check),
                ("Model", self.model_tag),
            )
            if value
        ]
        if self.url:
            context.append(("Open in Dagster", f"<{self.url}|{_escape(self.url)}>"))
        blocks: list[dict] = [
            {"type": "header", "text": {"type": "plain_text", "text": _cut(self.title, _HEADER), "emoji": True}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _cut(f"{_EMOJI[self.severity]} {_escape(self.details)}", _SECTION)},
            },
        ]
        if context:
            blocks.append(
                {
                    "type": "section",
                    "fields": [
                        {"type": "mrkdwn", "text": _cut(f"*{name}*\n{value}", _FIELD)} for name, value in context[:10]
                    ],
                }
            )
        return {"text": _cut(_escape(summary), _SECTION), "blocks": blocks}

    def log_fields(self) -> dict:
        """What the alert's log line says of it (lib/logs.py's context fields among them)."""
        return {
            "alert": self.kind,
            "severity": self.severity,
            "run_id": self.run_id,
            "job": self.job,
            "asset": self.asset,
            "check": self.check,
            "model_tag": self.model_tag,
            "url": self.url,
            "details": self.details,
        }


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    text = _URL_CREDENTIALS.sub(rf"\g<scheme>{REDACTED}@", text)
    text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
    return _SECRET_PARAMETER.sub(rf"\g<1>={REDACTED}", text)


def _escape(text: str) -> str:
    """Slack's mrkdwn treats &, < and > as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Delivery:
    """How sending went: never the URL, which is a secret (a Slack webhook URL is its own credential)."""

    delivered: bool
    attempts: int
    status: int | None = None  # the receiver's last HTTP status
    error: str | None = None  # why it was not delivered

    def log_fields(self) -> dict:
        return {"delivered": self.delivered, "attempts": self.attempts, "status": self.status, "error": self.error}


class Webhook:
    """POSTs payloads to one URL: up to ``attempts`` tries per payload for a connection error, a timeout, a 5xx
    or a 429 (after ``backoff_seconds``, doubling, or the receiver's Retry-After up to ``max_wait_seconds``);
    a 4xx other than 429 is not retried (the URL or the payload is wrong, and will stay so). Once a payload has
    used up its tries, the receiver is taken to be down: later payloads get a single try until one is taken,
    so that many alerts to a dead receiver still go out in bounded time."""

    def __init__(
        self,
        url: str,
        *,
        attempts: int = 4,
        backoff_seconds: float = 0.5,
        timeout_seconds: float = 5.0,
        max_wait_seconds: float = 10.0,
    ) -> None:
        self._url = url
        # what a receiver's error text might echo of the URL, the secret part being its path
        self._hidden = [url, *([urlsplit(url).path] if len(urlsplit(url).path) >= 4 else [])]
        self.attempts, self.backoff, self.timeout = attempts, backoff_seconds, timeout_seconds
        self.max_wait = max_wait_seconds
        self.down = False

    def __repr__(self) -> str:
        return "Webhook(<url hidden>)"

    def post(self, payload: dict) -> Delivery:
        tries = 1 if self.down else self.attempts
        wait, status, error = self.backoff, None, None
        for attempt in range(1, tries + 1):
            retry_after = None
            try:
                response = requests.post(self._url, json=payload, timeout=self.timeout)
            except requests.RequestException as exc:  # its text would hold the URL: the class says enough
                status, error = None, f"{type(exc).__name__} (no answer from the receiver)"
            else:
                status = response.status_code
                if status < 300:
                    self.down = False
                    return Delivery(True, attempt, status)
                error = f"HTTP {status}: {_cut(redact(response.text.strip(), self._hidden), 200)}"
                if status != 429 and status < 500:
                    return Delivery(False, attempt, status, error)
                retry_after = _seconds(response.headers.get("Retry-After"))
            if attempt < tries:
                time.sleep(min(retry_after if retry_after is not None else wait, self.max_wait))
                wait *= 2
        self.down = True
        return Delivery(False, tries, status, error)


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: rare from webhook receivers; the backoff will do
        return None
