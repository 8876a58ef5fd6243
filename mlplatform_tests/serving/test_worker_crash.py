"""A worker of the served bento killed with SIGKILL (issue #14, finding 7): the other worker goes on answering,
a request the dead worker held fails at once instead of hanging, and every prediction answered more than the
prediction log's flush interval before the kill is in the log."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import httpx
import psutil
import pytest

from mlplatform.lib.serving.prediction_log import read_prediction_log
from mlplatform.lib.serving.serving import request_rows
from mlplatform_tests.serving.conftest import TOKEN, serve_bento
from mlplatform_tests.serving.models import SavedModel

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FLUSH_SECONDS = 5.0  # PredictionLog's default flush interval, which the service uses


def workers_of(server_pid: int) -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process(server_pid).children()
        if any("_bentoml_impl.worker" in part for part in child.cmdline())
    ]


def stalled_request(url: str) -> socket.socket:
    """A prediction whose body never finishes: held by whichever worker accepted it."""
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=60)
    connection.sendall(
        f"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode()
    )
    return connection


def test_a_killed_worker_loses_no_logged_prediction_and_holds_no_request(
    bento_tag: str, penguins_model: SavedModel, tmp_path: Path
) -> None:
    rows = request_rows(penguins_model.holdout, penguins_model.schema)
    environment = {"MLPLATFORM_API_TOKEN": TOKEN, "MLPLATFORM_SERVE_WORKERS": "2", "MLPLATFORM_BODY_SECONDS": "20"}
    with serve_bento(bento_tag, tmp_path, **environment) as server:  # 20 s: the kill comes long before
        server.wait_ready()
        workers = workers_of(server.process.pid)
        assert len(workers) == 2

        with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
            answered = [client.post("/predict", json=row) for row in rows]
        assert {r.status_code for r in answered} == {200}
        held = [stalled_request(server.url) for _ in range(8)]  # spread over both workers by the kernel
        time.sleep(FLUSH_SECONDS + 1)  # the contract: what was answered a flush interval ago is on disk

        ours = {connection.getsockname()[1] for connection in held}

        def holding(worker: psutil.Process) -> int:
            return sum(1 for c in worker.net_connections("tcp") if c.raddr and c.raddr.port in ours)

        victim = max(workers, key=holding)  # a worker that holds some of them
        holding_before = holding(victim)
        assert holding_before > 0
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(30)

        # the requests the dead worker held end now (connection closed), not when the client gives up
        outcomes = []
        for connection in held:
            with connection:
                try:
                    outcomes.append(connection.recv(100)[:12])
                except ConnectionResetError:
                    outcomes.append(b"reset")
        closed = [outcome for outcome in outcomes if outcome in (b"", b"reset")]
        assert len(closed) == holding_before, outcomes  # those of the dead worker: closed at once
        # the other worker answered its own stalled requests with 408 once their deadline passed
        assert set(outcomes) - {b"", b"reset"} <= {b"HTTP/1.1 408"}

        with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
            after = [client.post("/predict", json=row).status_code for row in rows[:20]]
            ready = client.get("/readyz").status_code
        assert set(after) == {200} and ready == 200  # the surviving worker answers

    logged = read_prediction_log(tmp_path / "predictions", penguins_model.project)
    missing = {r.json()["request_id"] for r in answered} - set(logged["request_id"])
    assert missing == set()
