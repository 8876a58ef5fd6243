"""A terminal logger for ``mlplatform run``: one line per step start, message, success or failure."""

import logging
import sys
import time

import dagster as dg

_EVENTS = {"STEP_START": "started", "STEP_SUCCESS": "done", "STEP_FAILURE": "FAILED"}


class _ProgressFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", {}) or {}
        event = meta.get("dagster_event")
        step = meta.get("step_key") or ""
        message = meta.get("orig_message") or record.getMessage()
        if event is not None:
            message = _EVENTS[event.event_type_value]
            if event.event_type_value == "STEP_SUCCESS":
                message += f" in {event.event_specific_data.duration_ms / 1000:.1f} s"
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        return f"  {stamp}  {step:<20} {message}"


class _ProgressFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        meta = getattr(record, "dagster_meta", {}) or {}
        event = meta.get("dagster_event")
        if event is None:
            return record.levelno >= logging.INFO and bool(meta.get("step_key"))
        return event.event_type_value in _EVENTS


@dg.logger(description="Step progress for a terminal: starts, messages, successes and failures.")
def progress_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger("mlplatform.progress", level=logging.DEBUG)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_ProgressFormatter())
    handler.addFilter(_ProgressFilter())
    logger.addHandler(handler)
    return logger
