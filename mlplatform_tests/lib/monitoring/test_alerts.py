"""Alerts as a person receives them: Slack-compatible JSON POSTed to a real HTTP receiver, with retries,
backoff and no secret in anything that leaves."""

from __future__ import annotations

import json

import pytest

from mlplatform.lib.monitoring.alerts import REDACTED, Alert, Webhook, redact
from mlplatform_tests.servers import WebhookReceiver, free_port

ALERT = Alert(
    kind="run_failure",
    severity="error",
    title="Run of ingest_batch failed at raw_batch",
    details="raw_batch: IngestionError: cannot read <landing>/b.csv & give up",
    run_id="0d3c5e1a-run",
    job="ingest_batch",
    asset="raw_batch",
    model_tag="penguins:abc123",
    url="http://127.0.0.1:3000/runs/0d3c5e1a-run",
)


def quick(url: str, **options) -> Webhook:
    return Webhook(url, backoff_seconds=0.01, **options)


def test_the_payload_is_what_a_slack_incoming_webhook_takes() -> None:
    payload = ALERT.payload()

    assert set(payload) == {"text", "blocks"}
    assert payload["text"].startswith("Run of ingest_batch failed at raw_batch\n")
    header, section, fields = payload["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Run of ingest_batch failed at raw_batch", "emoji": True},
    }
    # mrkdwn: &, < and > escaped so a path or a comparison is not read as a link
    escaped = "raw_batch: IngestionError: cannot read &lt;landing&gt;/b.csv &amp; give up"
    assert section["text"]["text"] == f":red_circle: {escaped}"
    shown = {field["text"].split("\n")[0]: field["text"].split("\n", 1)[1] for field in fields["fields"]}
    assert shown == {
        "*Run*": "0d3c5e1a-run",
        "*Job*": "ingest_batch",
        "*Asset*": "raw_batch",
        "*Model*": "penguins:abc123",
        "*Open in Dagster*": "<http://127.0.0.1:3000/runs/0d3c5e1a-run|http://127.0.0.1:3000/runs/0d3c5e1a-run>",
    }


def test_long_texts_are_cut_to_slack_s_limits() -> None:
    long = Alert(kind="check_failed", severity="warning", title="t" * 400, details="d" * 10_000)

    header, section = long.payload()["blocks"]

    assert len(header["text"]["text"]) == 150 and header["text"]["text"].endswith("…")
    assert len(section["text"]["text"]) == 3000 and len(long.payload()["text"]) == 3000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "cannot reach postgresql+psycopg://ana:pa55word@db/x",
            f"cannot reach postgresql+psycopg://ana:{REDACTED}@db/x",
        ),
        ("sent Authorization: Bearer abc.def-123 to it", f"sent Authorization: Bearer {REDACTED} to it"),
        (
            "GET https://api.example.com/x?api_key=k3y&page=2",
            f"GET https://api.example.com/x?api_key={REDACTED}&page=2",
        ),
        ("token=t0k3n; password=hunter2", f"token={REDACTED}; password={REDACTED}"),
        ("the serving token is tok-98765", f"the serving token is {REDACTED}"),  # a secret named by the caller
        ("nothing secret in 3 rows", "nothing secret in 3 rows"),
    ],
)
def test_redaction(text: str, expected: str) -> None:
    assert redact(text, ["tok-98765"]) == expected


def test_a_redacted_alert_holds_no_secret_in_any_field() -> None:
    leaky = Alert(
        kind="run_failure",
        severity="error",
        title="failed with tok-98765",
        details="https://hooks.example/services/T/B/xyz rejected tok-98765",
        asset="tok-98765",
    )

    clean = leaky.redacted(["tok-98765", "https://hooks.example/services/T/B/xyz", None])

    assert (clean.title, clean.details, clean.asset) == ("failed with ***", "*** rejected ***", "***")
    sent = json.dumps(clean.payload()) + json.dumps(clean.log_fields())
    assert "tok-98765" not in sent and "services/T/B/xyz" not in sent


def test_a_payload_is_delivered_once_when_the_receiver_takes_it() -> None:
    with WebhookReceiver() as receiver:
        delivery = quick(receiver.url).post(ALERT.payload())

    assert (delivery.delivered, delivery.attempts, delivery.status) == (True, 1, 200)
    assert receiver.received == [ALERT.payload()]


def test_a_5xx_or_a_429_is_retried_until_it_is_taken() -> None:
    with WebhookReceiver(statuses=[503, 429, 500], retry_after="0") as receiver:
        delivery = quick(receiver.url).post(ALERT.payload())

    assert (delivery.delivered, delivery.attempts) == (True, 4)
    assert len(receiver.received) == 4 and receiver.delivered == [ALERT.payload()]


def test_a_4xx_is_not_retried_and_the_error_never_shows_the_url() -> None:
    with WebhookReceiver(statuses=[400]) as receiver:
        delivery = quick(receiver.url).post(ALERT.payload())

    assert (delivery.delivered, delivery.attempts, delivery.status) == (False, 1, 400)
    assert delivery.error == "HTTP 400: invalid_payload"
    assert len(receiver.received) == 1


def test_an_unreachable_receiver_is_tried_with_backoff_then_given_one_try_per_later_alert() -> None:
    url = f"http://127.0.0.1:{free_port()}/services/T000/B000/secret-path"
    webhook = quick(url, timeout_seconds=2)

    first, second = webhook.post(ALERT.payload()), webhook.post(ALERT.payload())

    assert (first.delivered, first.attempts, first.status) == (False, 4, None)
    assert first.error == "ConnectionError (no answer from the receiver)"
    assert (second.delivered, second.attempts) == (False, 1)  # down: no more waiting on it in this tick
    assert "secret-path" not in repr(webhook) + repr(first) + repr(second)


def test_a_receiver_that_recovers_gets_retries_again() -> None:
    with WebhookReceiver(statuses=[500, 500, 500, 500, 500]) as receiver:
        webhook = quick(receiver.url)
        failed, single, recovered = (webhook.post({"text": str(n)}) for n in range(3))

    assert (failed.delivered, failed.attempts) == (False, 4)
    assert (single.delivered, single.attempts) == (False, 1)  # the fifth 500
    assert (recovered.delivered, recovered.attempts) == (True, 1)
    assert not webhook.down and receiver.delivered == [{"text": "2"}]
