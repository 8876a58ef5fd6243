"""Micro-batching: concurrent requests share one model call, on a thread of its own."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any


class Overloaded(RuntimeError):
    """The queue holds as many rows as it may: the request is refused rather than queued (a 503 to the client)."""


@dataclass
class _Pending:
    rows: list[dict]
    future: asyncio.Future


class MicroBatcher:
    """Concurrent requests share one model call. While a call runs, arriving requests wait in a queue; when
    it ends, the next call takes everything queued (up to ``max_rows``). The batch size follows the load by
    itself: one row at a time when requests come one at a time, more as they pile up, with no waiting for
    a batch to fill. Load is shed only past a bound: a request that would bring the rows waiting beyond
    ``max_queued_rows`` raises ``Overloaded`` at once (BentoML's own adaptive batching answers 503 whenever
    its latency estimate says a request would miss ``max_latency_ms``; this queue refuses only when full).

    The model runs on a thread of its own, so the event loop goes on accepting and parsing requests while
    it computes, and their rows are queued by the time it finishes."""

    def __init__(
        self,
        predict: Callable[[list[dict]], list[Any]],
        *,
        max_rows: int = 2048,
        max_queued_rows: int = 20_000,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._predict = predict
        self.max_rows = max_rows
        self.max_queued_rows = max_queued_rows
        self.queued_rows = 0  # rows waiting for a model call, the one in progress not counted
        self._on_batch = on_batch  # told the rows of each model call, for metrics
        self._queue: deque[_Pending] = deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    async def __call__(self, rows: list[dict]) -> list[Any]:
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._wakeup = asyncio.Event()  # one worker per event loop (tests run several loops in turn)
            self._worker = loop.create_task(self._run(), name="micro-batcher")
        if self._queue and self.queued_rows + len(rows) > self.max_queued_rows:  # one request alone always goes
            raise Overloaded(f"{self.queued_rows} rows are waiting for the model, at most {self.max_queued_rows} may")
        pending = _Pending(rows, loop.create_future())
        self._queue.append(pending)
        self.queued_rows += len(rows)
        self._wakeup.set()
        return await pending.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = self._take()
                try:
                    if self._on_batch is not None:
                        self._on_batch(sum(len(pending.rows) for pending in batch))
                    await self._answer(loop, batch)
                except Exception as exc:  # never leave a request waiting for an answer that will not come
                    for pending in batch:
                        _settle(pending.future, exception=exc)

    def _take(self) -> list[_Pending]:
        batch = [self._queue.popleft()]  # a request larger than max_rows still goes, alone
        rows = len(batch[0].rows)
        while self._queue and rows + len(self._queue[0].rows) <= self.max_rows:
            rows += len(self._queue[0].rows)
            batch.append(self._queue.popleft())
        self.queued_rows -= rows
        return [p for p in batch if not p.future.cancelled()]

    async def _answer(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        if not batch:
            return
        rows = [row for pending in batch for row in pending.rows]
        try:
            outputs = await loop.run_in_executor(self._executor, self._predict, rows)
        except Exception as exc:
            if len(batch) > 1:  # answer each request alone, so one bad request cannot fail its neighbours
                for pending in batch:
                    await self._answer(loop, [pending])
                return
            _settle(batch[0].future, exception=exc)
            return
        start = 0
        for pending in batch:
            _settle(pending.future, result=outputs[start : start + len(pending.rows)])
            start += len(pending.rows)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        for pending in self._queue:
            pending.future.cancel()
        self._queue.clear()
        self.queued_rows = 0
        self._executor.shutdown(wait=False, cancel_futures=True)


def _settle(future: asyncio.Future, *, result: Any = None, exception: BaseException | None = None) -> None:
    if future.done():  # the client went away and its request was cancelled
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)
