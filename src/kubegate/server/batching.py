"""Batching concurrent database work: whoever arrives while a batch runs goes in the next one.

A round trip to the database costs the server far more CPU than the rows it moves (thread
switches and SQLAlchemy's per-statement work on SQLite; a pool checkout, a ping and a network
round trip on PostgreSQL), so under load the cost per request is the number of round trips,
not their size. A :class:`Batcher` owns one task that runs a batch
function on everything submitted since its last batch began, then answers each submitter.

Batches never serve a request from the past: an item is only ever part of a batch that
starts after it was submitted, so a lookup sees every commit made before its request arrived,
exactly as a query of its own would. Nothing is cached between batches.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from kubegate.errors import Unavailable

In = TypeVar("In")
Out = TypeVar("Out")

MAX_BATCH = 500
"""Items in one batch at most (an IN list, a multi-row insert); more wait for the next."""

SHUTTING_DOWN = "the server is shutting down; retry shortly"

BatchFunction = Callable[[list[In]], Awaitable[Sequence[Out | Exception]]]
"""Runs one batch: answers one result per item, in order; an exception fails that item alone.
Raising fails every item of the batch."""


@dataclass(slots=True)
class _Waiting(Generic[In, Out]):
    item: In
    answer: asyncio.Future[Out]


class Batcher(Generic[In, Out]):
    """Runs ``batch`` on what gathered, one batch at a time, from a task of its own.

    :meth:`start` and :meth:`close` belong to the app's lifespan; :meth:`close` finishes what
    is queued, and :meth:`submit` then answers 503.
    """

    def __init__(self, batch: BatchFunction[In, Out], *, name: str, max_batch: int = MAX_BATCH):
        self._batch = batch
        self._name = name
        self._max_batch = max_batch
        self._queue: deque[_Waiting[In, Out]] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the batching task (in the running event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def close(self) -> None:
        """Refuse new items, finish the queued ones, and stop the task."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    @property
    def queued(self) -> int:
        """Items waiting for the next batch."""
        return len(self._queue)

    async def submit(self, item: In) -> Out:
        """Put ``item`` in the next batch and wait for its result.

        A submitter cancelled while waiting does not withdraw the item: a write still lands.
        """
        if self._closing or self._task is None:
            raise Unavailable(SHUTTING_DOWN)
        answer: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(item, answer))
        self._wake.set()
        return await answer

    async def _run(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                size = min(len(self._queue), self._max_batch)
                waiting = [self._queue.popleft() for _ in range(size)]
                await self._answer(waiting)
        finally:
            # Cancelled: whoever still waits hears so rather than waiting for ever.
            while self._queue:
                _settle(self._queue.popleft().answer, Unavailable(SHUTTING_DOWN))

    async def _answer(self, waiting: list[_Waiting[In, Out]]) -> None:
        try:
            results = await self._batch([w.item for w in waiting])
        except asyncio.CancelledError:
            for w in waiting:
                _settle(w.answer, Unavailable(SHUTTING_DOWN))
            raise
        except Exception as exc:
            # The whole batch failed (the database is away): every item of it, no other.
            for w in waiting:
                _settle(w.answer, exc)
            return
        if len(results) != len(waiting):
            wrong = RuntimeError(f"{self._name}: {len(results)} results for {len(waiting)} items")
            results = [wrong] * len(waiting)
        for w, result in zip(waiting, results, strict=True):
            _settle(w.answer, result)


def _settle(answer: asyncio.Future[Out], result: Out | BaseException) -> None:
    if answer.done():  # the submitter was cancelled
        return
    if isinstance(result, BaseException):
        answer.set_exception(result)
    else:
        answer.set_result(result)
