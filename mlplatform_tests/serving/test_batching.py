"""mlplatform.lib.serving.batching: concurrent requests share model calls and each gets its own answer."""

from __future__ import annotations

import asyncio

from mlplatform.lib.serving.batching import MicroBatcher


class TestMicroBatcher:
    @staticmethod
    def doubling(calls: list[int]):
        def predict(rows: list[dict]) -> list[int]:
            calls.append(len(rows))
            if any(row.get("poison") for row in rows):
                raise ValueError("poisoned row")
            return [row["x"] * 2 for row in rows]

        return predict

    def test_concurrent_requests_share_model_calls_and_get_their_own_answers(self) -> None:
        calls: list[int] = []
        batcher = MicroBatcher(self.doubling(calls))

        async def burst():
            return await asyncio.gather(*(batcher([{"x": i}, {"x": -i}]) for i in range(50)))

        answers = asyncio.run(burst())

        assert answers == [[2 * i, -2 * i] for i in range(50)]
        assert calls == [100]  # all fifty were queued before the first call began
        batcher.close()

    def test_a_call_takes_whole_requests_up_to_max_rows(self) -> None:
        calls: list[int] = []
        batcher = MicroBatcher(self.doubling(calls), max_rows=5)

        async def burst():
            return await asyncio.gather(*(batcher([{"x": 1}] * 3) for _ in range(4)), batcher([{"x": 1}] * 9))

        asyncio.run(burst())

        assert calls == [3, 3, 3, 3, 9]  # 3 + 3 > 5: one request per call; a request above max_rows goes alone
        batcher.close()

    def test_a_failing_request_fails_alone(self) -> None:
        calls: list[int] = []
        batcher = MicroBatcher(self.doubling(calls))

        async def burst():
            requests = [batcher([{"x": i, "poison": i == 3}]) for i in range(6)]
            return await asyncio.gather(*requests, return_exceptions=True)

        answers = asyncio.run(burst())

        assert [type(a).__name__ if isinstance(a, Exception) else a for a in answers] == [
            [0],
            [2],
            [4],
            "ValueError",
            [8],
            [10],
        ]
        batcher.close()

    def test_it_reports_each_call_s_rows_and_survives_a_new_event_loop(self) -> None:
        sizes: list[int] = []
        batcher = MicroBatcher(self.doubling([]), on_batch=sizes.append)

        assert asyncio.run(batcher([{"x": 1}])) == [2]
        assert asyncio.run(batcher([{"x": 2}, {"x": 3}])) == [4, 6]
        assert sizes == [1, 2]
        batcher.close()

    def test_past_its_bound_the_queue_refuses_at_once_and_recovers(self) -> None:
        calls: list[int] = []
        batcher = MicroBatcher(self.doubling(calls), max_queued_rows=4)

        async def burst():
            requests = [batcher([{"x": i}, {"x": i}]) for i in range(5)]  # 2 rows each: two fit while one runs
            return await asyncio.gather(*requests, return_exceptions=True)

        answers = asyncio.run(burst())

        assert [type(a).__name__ if isinstance(a, Exception) else a for a in answers] == [
            [0, 0],
            [2, 2],
            "Overloaded",
            "Overloaded",
            "Overloaded",
        ]
        assert batcher.queued_rows == 0
        assert asyncio.run(batcher([{"x": 1}] * 9)) == [2] * 9  # larger than the bound, alone: it goes
        batcher.close()
