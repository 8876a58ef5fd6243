"""mlplatform.lib.log_relay: a process's output to a log rotated by size, and the end of the relay with its
writer; and LocalServer's one restart on BentoML's control-port race, with real child processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlplatform.resources.bentos import BentoError, LocalServer


def test_the_log_rotates_by_size_and_keeps_its_backups(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "server.log"
    relay = subprocess.Popen(
        [sys.executable, "-m", "mlplatform.lib.log_relay", str(log), "100", "2"], stdin=subprocess.PIPE
    )
    lines = [f"line {i:03d} ".ljust(39, "x").encode() + b"\n" for i in range(10)]  # 40 bytes each
    relay.communicate(b"".join(lines), timeout=30)  # its input ends: the relay ends

    assert relay.returncode == 0
    assert log.read_bytes() == b"".join(lines[8:])  # two lines a file: a third would pass 100 bytes
    assert (tmp_path / "logs" / "server.log.1").read_bytes() == b"".join(lines[6:8])
    assert (tmp_path / "logs" / "server.log.2").read_bytes() == b"".join(lines[4:6])
    assert not (tmp_path / "logs" / "server.log.3").exists()  # the oldest lines are gone


def exits_with(output: str, tmp_path: Path) -> subprocess.Popen:
    with (tmp_path / "server.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-c", f"print({output!r}); raise SystemExit(1)"], stdout=log)


@pytest.mark.parametrize(
    ("first", "relaunched"),
    [("zmq.error.ZMQError: Address already in use (addr='tcp://127.0.0.1:5')", True), ("ImportError: x", False)],
)
def test_a_server_is_started_again_once_and_only_on_the_control_port_race(
    tmp_path: Path, first: str, relaunched: bool
) -> None:
    starts: list[str] = []

    def relaunch() -> tuple[subprocess.Popen, None]:
        starts.append("again")
        return exits_with("zmq.error.ZMQError: Address already in use, again", tmp_path), None

    server = LocalServer(exits_with(first, tmp_path), "http://127.0.0.1:9", tmp_path / "server.log", relaunch=relaunch)

    with pytest.raises(BentoError, match="exited with code 1") as failure:
        server.wait_ready(timeout=60)

    assert starts == (["again"] if relaunched else [])  # the second race is not retried: once only
    assert ("again" in str(failure.value)) == relaunched
