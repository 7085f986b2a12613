"""Admission: the bounded queue in front of model work, and the per-request time limit.

Answers in progress share the model: on llama.cpp their steps are decoded in one batch, on
transformers they take turns, so past a few at once each one gets slower faster than the
total grows. `Admission` lets `max_active` answers run, queues up to `max_waiting` more in
arrival order, and turns anyone beyond that away at once with `Overloaded` (HTTP 429 with
`Retry-After`), instead of letting them pile up until every request times out.

    async with admission.limit(settings.request_timeout_s), admission.slot():
        final = await engine.run(...)

The limit covers the wait in the queue too: a client's patience does not care where the time
went. A slot is handed straight from a leaving answer to the first waiter, so a newcomer can't
overtake the queue. Cancellation is safe at every point: a waiter cancelled in the queue gives
up its place, and one cancelled just as a slot reached it passes the slot on.

Left out: priorities, per-client fairness, and sharing the limits between processes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from agent_server.errors import Overloaded, RequestTimeout


class Admission:
    def __init__(self, max_active: int, max_waiting: int) -> None:
        if max_active < 1 or max_waiting < 0:
            raise ValueError("need max_active >= 1 and max_waiting >= 0")
        self.max_active = max_active
        self.max_waiting = max_waiting
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        # A running mean of how long a slot is held, for the Retry-After estimate; it starts
        # at a short answer's time on the default model (README, example session).
        self._mean_hold_s = 5.0

    @property
    def active(self) -> int:
        return self._active

    @property
    def waiting(self) -> int:
        return sum(not w.done() for w in self._waiters)

    def check(self) -> None:
        """Raise `Overloaded` if a caller arriving now would be turned away.

        For streaming routes, which take their slot inside the stream (a stream that never
        starts then holds nothing) but want to answer 429 before the 200.
        """
        if self._active >= self.max_active and self.waiting >= self.max_waiting:
            raise Overloaded(
                f"the server is busy: {self._active} of {self.max_active} answering "
                f"(max_active_answers) and {self.waiting} of {self.max_waiting} waiting "
                "(max_queued_answers); try again later",
                self.retry_after_s(),
            )

    def retry_after_s(self) -> int:
        """A rough wait until a queue place frees up: the queue ahead served at the mean rate."""
        ahead = self.waiting + 1
        return min(60, max(1, math.ceil(self._mean_hold_s * ahead / self.max_active)))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the `max_active` slots for the body; wait in the queue for it first."""
        await self._acquire()
        started = time.monotonic()
        try:
            yield
        finally:
            held = time.monotonic() - started
            self._mean_hold_s = 0.8 * self._mean_hold_s + 0.2 * held
            self._release()

    @asynccontextmanager
    async def limit(self, timeout_s: float | None) -> AsyncIterator[None]:
        """Cancel the body after `timeout_s` seconds and raise `RequestTimeout` (None: no limit)."""
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                yield
        except TimeoutError as exc:
            if not deadline.expired():  # a TimeoutError of the body's own: not ours to rename
                raise
            raise RequestTimeout(
                f"the request took longer than its limit of {timeout_s:g} s (request_timeout_s)"
            ) from exc

    async def _acquire(self) -> None:
        if self._active < self.max_active and not self.waiting:
            self._active += 1
            return
        self.check()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot reached us as we were cancelled: pass it on
            elif waiter in self._waiters:  # `_release` may have dropped it already
                self._waiters.remove(waiter)
            raise
        # `_release` handed its slot over: `_active` already counts this answer.

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._active -= 1
