"""When to retrain, decided from facts the Dagster instance holds: what asks for training (newly accepted data,
a drift or decay report, the clock), which training runs exist, and the cooldown.

- A training run reads the accepted data as it is when it *starts*, so a queued run answers every request
  made before it starts, and a run that started after a request answers it too.
- At most one automatic training run waits: none is requested while one is queued. With the run queue's
  limit of one pipeline run at a time (dagster.yaml), that is one running and one queued at most.
- ``cooldown`` seconds pass between the beginnings (start, or creation while it waits) of two automatic
  training runs; a request that arrives sooner waits for the next look after the cooldown.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

NEW_DATA, DRIFT, DECAY, SCHEDULE = "new-data", "drift", "decay", "schedule"
# The reason a run's tag names when several ask at once: what monitoring found before what simply arrived.
PRECEDENCE = (DRIFT, DECAY, NEW_DATA, SCHEDULE)


@dataclass(frozen=True)
class Signal:
    """Something that asks for training."""

    reason: str  # NEW_DATA, DRIFT, DECAY or SCHEDULE
    key: str  # what it is about: a data version, a report's event, a scheduled time
    at: float  # when it happened, seconds since the epoch
    detail: str  # why, in words


@dataclass(frozen=True)
class TrainingRun:
    run_id: str
    automatic: bool  # started by a trigger, not a person
    waiting: bool  # queued or starting: it will read the data as it is when it starts
    created_at: float
    started_at: float | None  # None until it starts (and for a run cancelled before it started)

    @property
    def began(self) -> float:
        return self.started_at if self.started_at is not None else self.created_at


@dataclass(frozen=True)
class Decision:
    signals: tuple[Signal, ...]  # what asks for training and no run answers yet
    skip: str  # why no run is requested now; "" when one is
    run_key: str  # the same facts give the same key, so a tick evaluated twice launches one run

    @property
    def reason(self) -> str:
        return next(reason for reason in PRECEDENCE if any(s.reason == reason for s in self.signals))

    @property
    def detail(self) -> str:
        return "; ".join(signal.detail for signal in self.signals)


def decide(
    signals: Sequence[Signal], runs: Sequence[TrainingRun], cooldown_seconds: float, now: float | None = None
) -> Decision:
    """Whether to request a training run now, for which signals, or why not."""
    now = time.time() if now is None else now
    waiting = [run for run in runs if run.waiting]
    if waiting:
        queued = waiting[0].run_id
        return Decision((), f"training run {queued} is queued; it will train on the data as it is when it starts", "")
    last_start = max((run.started_at for run in runs if run.started_at is not None), default=None)
    pending = tuple(signal for signal in signals if last_start is None or signal.at > last_start)
    if not pending:
        return Decision((), "nothing has asked for training since the last training run started", "")
    automatic = [run for run in runs if run.automatic]
    if automatic:
        last = max(automatic, key=lambda run: run.began)
        ready_at = last.began + cooldown_seconds
        if now < ready_at:
            why = "; ".join(signal.detail for signal in pending)
            return Decision(
                pending,
                f"cooldown: automatic training run {last.run_id} began {now - last.began:.0f} s ago; the next may "
                f"start in {ready_at - now:.0f} s (automation.cooldown_minutes), for: {why}",
                "",
            )
    latest = max(runs, key=lambda run: run.created_at, default=None)
    asked = "+".join(f"{signal.reason}:{signal.key}" for signal in pending)
    return Decision(pending, "", f"{asked}|after:{latest.run_id if latest else 'none'}")
