"""The Batcher: whoever arrives while a batch runs goes in the next one, and each submitter
gets its own answer. No database here: the batch functions are plain coroutines that the
tests hold open with events, so nothing depends on timing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from kubegate.errors import Unavailable
from kubegate.server.batching import Batcher

pytestmark = pytest.mark.anyio


class Recorder:
    """A batch function that records its batches and can be held open at will."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, items: list[int]) -> list[int | Exception]:
        self.batches.append(items)
        self.entered.set()
        await self.release.wait()
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def until(condition: Callable[[], bool], turns: int = 100) -> None:
    """Let the event loop run until ``condition`` holds (a bounded number of turns, not a
    time): fail if it never does."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"still false after {turns} turns of the event loop")


async def test_items_submitted_together_run_as_one_batch_and_each_gets_its_answer() -> None:
    recorder = Recorder()
    batcher: Batcher[int, int] = Batcher(recorder, name="test")
    batcher.start()
    try:
        results = await asyncio.gather(
            *(batcher.submit(i) for i in (2, 4, 6)), return_exceptions=True
        )
    finally:
        await batcher.close()
    assert results == [20, 40, 60]
    assert recorder.batches == [[2, 4, 6]]


async def test_an_exception_in_place_of_a_result_fails_that_item_alone() -> None:
    recorder = Recorder()
    batcher: Batcher[int, int] = Batcher(recorder, name="test")
    batcher.start()
    try:
        results = await asyncio.gather(
            *(batcher.submit(i) for i in (2, 3, 4)), return_exceptions=True
        )
    finally:
        await batcher.close()
    assert results[0] == 20 and results[2] == 40
    assert isinstance(results[1], ValueError) and str(results[1]) == "odd 3"


async def test_items_arriving_while_a_batch_runs_wait_for_the_next_batch() -> None:
    recorder = Recorder()
    recorder.release.clear()
    batcher: Batcher[int, int] = Batcher(recorder, name="test")
    batcher.start()
    try:
        first = asyncio.create_task(batcher.submit(2))
        await recorder.entered.wait()
        # The first batch has begun: these must not join it (they might have to see what it
        # does not), so they make up the next one.
        later = [asyncio.create_task(batcher.submit(i)) for i in (4, 6)]
        await until(lambda: batcher.queued == 2)
        recorder.release.set()
        assert await first == 20
        assert [await task for task in later] == [40, 60]
    finally:
        await batcher.close()
    assert recorder.batches == [[2], [4, 6]]


async def test_a_failing_batch_fails_its_items_and_the_next_batch_runs_normally() -> None:
    calls: list[list[int]] = []

    async def flaky(items: list[int]) -> Sequence[int | Exception]:
        calls.append(items)
        if len(calls) == 1:
            raise ConnectionError("the database went away")
        return items

    batcher: Batcher[int, int] = Batcher(flaky, name="test")
    batcher.start()
    try:
        failed = await asyncio.gather(*(batcher.submit(i) for i in (1, 2)), return_exceptions=True)
        assert [type(e) for e in failed] == [ConnectionError, ConnectionError]
        assert await batcher.submit(3) == 3
    finally:
        await batcher.close()


async def test_batches_are_at_most_max_batch_items() -> None:
    recorder = Recorder()
    batcher: Batcher[int, int] = Batcher(recorder, name="test", max_batch=2)
    batcher.start()
    try:
        await asyncio.gather(*(batcher.submit(i) for i in (2, 4, 6, 8, 10)))
    finally:
        await batcher.close()
    assert recorder.batches == [[2, 4], [6, 8], [10]]


async def test_close_finishes_what_is_queued_then_refuses_with_503() -> None:
    recorder = Recorder()
    recorder.release.clear()
    batcher: Batcher[int, int] = Batcher(recorder, name="test")
    batcher.start()
    running = asyncio.create_task(batcher.submit(2))
    await recorder.entered.wait()
    queued = asyncio.create_task(batcher.submit(4))
    await until(lambda: batcher.queued == 1)
    # The running batch ends only once close() has begun (a callback runs after close() is
    # suspended waiting for the task): close must finish both the running and the queued item.
    asyncio.get_running_loop().call_soon(recorder.release.set)
    await batcher.close()
    assert recorder.batches == [[2], [4]]
    assert (await running, await queued) == (20, 40)
    with pytest.raises(Unavailable):
        await batcher.submit(6)


async def test_a_cancelled_submitter_does_not_withdraw_its_item_or_disturb_the_others() -> None:
    recorder = Recorder()
    recorder.release.clear()
    batcher: Batcher[int, int] = Batcher(recorder, name="test")
    batcher.start()
    try:
        gone = asyncio.create_task(batcher.submit(2))
        kept = asyncio.create_task(batcher.submit(4))
        await recorder.entered.wait()
        gone.cancel()
        recorder.release.set()
        assert await kept == 40
        with pytest.raises(asyncio.CancelledError):
            await gone
    finally:
        await batcher.close()
    assert recorder.batches == [[2, 4]]


async def test_submitting_before_start_answers_503() -> None:
    batcher: Batcher[int, int] = Batcher(Recorder(), name="test")
    with pytest.raises(Unavailable):
        await batcher.submit(1)
