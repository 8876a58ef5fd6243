"""Structured logs: one JSON object per line, for a log collector (Loki, CloudWatch, ``jq``), written by the runs,
the alert sensors and the prediction service alike.

Every line has ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``; the fields a record carries in
``extra`` (``run_id``, ``step``, ``asset``, ``model_tag``, ...) follow, each ``null`` when it is not known, so
that a query for a field never has to ask whether it exists.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

# The context every line states, null when unknown.
CONTEXT_FIELDS = ("run_id", "job", "step", "asset", "model_tag")
# What a LogRecord holds of its own: anything else on a record came from ``extra`` and is a field of the line.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def json_line(document: dict) -> str:
    """One line of JSON: values that JSON cannot hold (paths, timestamps) are written as text."""
    return json.dumps(document, default=str, ensure_ascii=False, separators=(",", ":"))


class JsonFormatter(logging.Formatter):
    """A record as one JSON line: time, level, logger, message, the context fields, then any other ``extra``.
    A subclass that knows more of its records (a Dagster run's) overrides ``message`` and ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": self.message(record),
            **dict.fromkeys(CONTEXT_FIELDS),
            **self.fields(record),
        }
        if record.exc_info:
            document["error"] = self.formatException(record.exc_info)
        return json_line(document)

    def message(self, record: logging.LogRecord) -> str:
        return record.getMessage()

    def fields(self, record: logging.LogRecord) -> dict:
        return {name: value for name, value in vars(record).items() if name not in _RECORD_ATTRIBUTES}


class AppendingFileHandler(logging.Handler):
    """Appends each record as a line to ``path``, opening the file for that line alone. The run workers, their
    step processes and the daemon's sensors all write the same file: each line is one ``write`` on a file
    opened with O_APPEND, which Linux performs whole at the file's end, so lines from different processes never
    interleave; and no process keeps a handle open that a long-lived one (the CLI, the daemon) would leak."""

    def __init__(self, path: Path, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(descriptor, line)
            finally:
                os.close(descriptor)
        except Exception:
            self.handleError(record)  # logging's own policy: report on stderr, never raise into the caller


class _Constant(logging.Filter):
    def __init__(self, fields: dict) -> None:
        super().__init__()
        self.fields = fields

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in self.fields.items():
            setattr(record, name, value)
        return True


def json_to_stdout(logger: logging.Logger, **fields: object) -> None:
    """Make ``logger`` write its records as JSON lines on stdout, each with ``fields`` (a served model's tag),
    and only there: not propagated to handlers a server framework set up for its own text lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_Constant(fields))
    logger.addHandler(handler)
    logger.propagate = False


def json_lines_logger(
    name: str, path: Path, *, stdout: bool, level: int | str = logging.DEBUG, formatter: JsonFormatter | None = None
) -> logging.Logger:
    """A logger of its own (not in logging's registry: each caller gets a fresh one) writing JSON lines to
    ``path``, and to stdout as well when ``stdout``; one formatter serves both."""
    logger = logging.Logger(name, level=level)
    handlers: list[logging.Handler] = [AppendingFileHandler(path)]
    if stdout:
        handlers.append(logging.StreamHandler(sys.stdout))
    formatter = formatter or JsonFormatter()
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return logger
