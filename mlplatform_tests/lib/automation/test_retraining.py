"""When to retrain: a queued run answers every request, a started one those made before it, and automatic runs
keep the cooldown between their starts."""

from __future__ import annotations

from dataclasses import replace

from mlplatform.lib.automation.retraining import (
    DECAY,
    DRIFT,
    NEW_DATA,
    Signal,
    TrainingRun,
    decide,
)

COOLDOWN = 30 * 60


def new_data(version: str, at: float) -> Signal:
    return Signal(NEW_DATA, version, at, f"data version {version} was accepted")


def run(run_id: str, created: float, started: float | None = None, *, automatic=True, waiting=False) -> TrainingRun:
    return TrainingRun(run_id, automatic, waiting, created, started)


def test_nothing_asks_nothing_runs() -> None:
    decision = decide([], [], COOLDOWN, now=100.0)
    assert decision.skip and not decision.run_key


def test_the_first_accepted_data_starts_training() -> None:
    decision = decide([new_data("v1", 10.0)], [], COOLDOWN, now=100.0)
    assert decision.skip == ""
    assert decision.reason == NEW_DATA and decision.run_key == "new-data:v1|after:none"
    assert "v1" in decision.detail


def test_a_queued_run_answers_every_request() -> None:
    queued = run("a", created=50.0, waiting=True)
    decision = decide([new_data("v2", 90.0), Signal(DRIFT, "7", 95.0, "drifted")], [queued], COOLDOWN, now=100.0)
    assert "queued" in decision.skip and not decision.run_key


def test_a_run_that_started_after_the_data_landed_answers_it() -> None:
    started = run("a", created=5.0, started=20.0)
    assert "nothing has asked" in decide([new_data("v1", 10.0)], [started], 0.0, now=100.0).skip
    # ... but not data that landed after it started
    decision = decide([new_data("v2", 30.0)], [started], 0.0, now=100.0)
    assert decision.skip == "" and decision.run_key == "new-data:v2|after:a"


def test_the_cooldown_counts_from_the_last_automatic_runs_start() -> None:
    last = run("a", created=0.0, started=60.0)
    waiting_for_cooldown = decide([new_data("v2", 120.0)], [last], COOLDOWN, now=600.0)
    assert waiting_for_cooldown.skip.startswith("cooldown") and "1260 s" in waiting_for_cooldown.skip
    assert waiting_for_cooldown.signals  # what waits is said
    assert decide([new_data("v2", 120.0)], [last], COOLDOWN, now=60.0 + COOLDOWN).skip == ""
    # A person's run is no reason to hold back the automatic ones.
    assert decide([new_data("v2", 120.0)], [replace(last, automatic=False)], COOLDOWN, now=600.0).skip == ""


def test_a_run_cancelled_before_it_started_is_asked_for_again_under_a_new_key() -> None:
    cancelled = run("a", created=20.0)  # neither waiting nor started
    decision = decide([new_data("v1", 10.0)], [cancelled], 0.0, now=100.0)
    assert decision.skip == "" and decision.run_key == "new-data:v1|after:a"


def test_monitoring_reasons_come_first_in_the_tag_and_every_reason_is_said() -> None:
    signals = [new_data("v3", 10.0), Signal(DECAY, "12", 11.0, "f1_macro fell by 0.08")]
    decision = decide(signals, [], COOLDOWN, now=100.0)
    assert decision.reason == DECAY
    assert "v3" in decision.detail and "fell by 0.08" in decision.detail
    assert decision.run_key == "new-data:v3+decay:12|after:none"


def simulate_burst(cooldown: float, files: int = 20, training_seconds: float = 600.0) -> list[TrainingRun]:
    """``files`` batches accepted over a minute, a look every 5 s, and a run queue that runs one training run
    at a time: what training runs exist at the end of each look."""
    runs: list[TrainingRun] = []
    peak_waiting = peak_running = 0
    for now in range(0, 120, 5):
        landed = [new_data(f"v{i}", 3.0 * i) for i in range(files) if 3.0 * i <= now]
        signals = landed[-1:]  # accepted_data's latest version is what the sensor sees
        # the queue: a waiting run starts once no other runs
        running = [r for r in runs if r.started_at is not None and r.started_at + training_seconds > now]
        if not running:
            runs = [replace(r, waiting=False, started_at=now) if r.waiting else r for r in runs]
        decision = decide(signals, runs, cooldown, now=float(now))
        if not decision.skip:
            runs.append(TrainingRun(f"run{len(runs)}", True, True, float(now), None))
        peak_waiting = max(peak_waiting, sum(r.waiting for r in runs))
        running = [r for r in runs if r.started_at is not None and r.started_at + training_seconds > now]
        peak_running = max(peak_running, len(running))
    assert peak_waiting <= 1 and peak_running <= 1
    return runs


def test_twenty_files_in_a_minute_start_one_training_run_and_queue_at_most_one() -> None:
    runs = simulate_burst(cooldown=COOLDOWN)
    assert len(runs) == 1  # the cooldown holds the rest back: the data they bring waits for the next run
    without_cooldown = simulate_burst(cooldown=0.0)
    assert len(without_cooldown) == 2  # one running, one queued behind it, and nothing more
    assert without_cooldown[0].started_at is not None and without_cooldown[1].waiting
