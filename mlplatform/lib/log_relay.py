"""A size-rotated log for a process that writes to its standard output: ``python -m mlplatform.lib.log_relay
LOG MAX_BYTES BACKUPS`` copies its standard input to ``LOG``, and when ``LOG`` would pass ``MAX_BYTES`` it
becomes ``LOG.1`` (``LOG.1`` becomes ``LOG.2``, ... up to ``BACKUPS``; the oldest is dropped). It ends when its
input does: when every process writing to the pipe has exited.

The local server's log goes through it (``mlplatform.resources.bentos.serve``): a server that runs for weeks,
refusing requests one log line each, keeps at most ``MAX_BYTES * (BACKUPS + 1)`` on disk."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import BinaryIO


def rotate(path: Path, backups: int) -> None:
    for index in range(backups, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        newer = path.with_name(f"{path.name}.{index - 1}") if index > 1 else path
        if newer.exists():
            os.replace(newer, older)
    if backups == 0:
        path.unlink(missing_ok=True)


def relay(source: BinaryIO, path: Path, max_bytes: int, backups: int) -> None:
    """Copy ``source`` to ``path`` line by line, flushed, rotating before a line would pass ``max_bytes``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    log = path.open("ab")
    try:
        for line in iter(source.readline, b""):
            if log.tell() and log.tell() + len(line) > max_bytes:
                log.close()
                rotate(path, backups)
                log = path.open("ab")
            log.write(line)
            log.flush()
    finally:
        log.close()


if __name__ == "__main__":
    relay(sys.stdin.buffer, Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
