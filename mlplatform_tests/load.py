"""A bounded load loop: predictions sent one after another through a URL (a Kubernetes Service), each on a new
connection as a fresh client would, every answer recorded: its latency, the model that answered, or why it
failed. The cluster tests assert on it (no failed request while a new version rolls out) and
``bench/kubernetes.py`` measures with it."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Answers:
    latencies: list[float] = field(default_factory=list)  # seconds, of the answered requests
    models: Counter = field(default_factory=Counter)  # model_tag -> answers
    failures: list[str] = field(default_factory=list)
    last_model: str = ""

    @property
    def sent(self) -> int:
        return len(self.latencies) + len(self.failures)

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")


class LoadLoop:
    """``with LoadLoop(url, token, row) as answers:`` sends ``row`` to ``url``/predict until the block ends (or
    ``max_seconds`` pass, so a hung test stops loading), ``interval`` seconds apart."""

    def __init__(self, url: str, token: str, row: dict, *, interval: float = 0.05, max_seconds: float = 1200) -> None:
        self.url, self.token, self.body = url, token, json.dumps(row).encode()
        self.interval, self.max_seconds = interval, max_seconds
        self.answers = Answers()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="load-loop", daemon=True)

    def __enter__(self) -> Answers:
        self._thread.start()
        return self.answers

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            request = urllib.request.Request(
                f"{self.url}/predict",
                data=self.body,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
            )
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    model = json.loads(response.read())["model_tag"]
            except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
                self.answers.failures.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: {exc}")
            else:
                self.answers.latencies.append(time.perf_counter() - started)
                self.answers.models[model] += 1
                self.answers.last_model = model
            self._stop.wait(self.interval)
