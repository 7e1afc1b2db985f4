"""Bounded admission (load shedding): at most ``max_in_flight`` requests in the model path, ``max_queued`` waiting.

A request that would raise the model path's backlog past what the service can answer in time is
refused at once with **503 + Retry-After** (class ``overloaded``) instead of being answered late
or timing out: Triton's ``max_queue_size`` / Ray Serve's ``max_queued_requests`` behaviour. The
model path is everything that holds a decoder child or the batcher (decode -> model ->
postprocess); health checks, metrics and admin routes never queue here, so readiness stays
unaffected by overload (a load balancer must keep the replica, it is working at capacity).

``async with admission.slot(): ...`` admits (or queues, or refuses); a queued request is
admitted first-in first-out when a slot frees; one that waits longer than ``max_wait_s`` is
refused like one that found the queue full. ``Retry-After`` is the backlog ahead of a new
request divided by the measured drain rate (an EWMA of the slot hold time), at least 1 s.
Refusals are counted by ``metrics.shed(model)`` (``mmapps_shed_requests_total``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from mmapps.serve.errors import ServeError

EWMA_WEIGHT = 0.2  # weight of the newest hold time in the drain-rate estimate


@dataclass(frozen=True)
class AdmissionLimits:
    """How much work the model path takes on at once.

    Args:
        max_in_flight: requests decoding or in the batcher at once.
        max_queued: requests waiting for a slot; one more is refused (503).
        max_wait_s: the longest a request waits in the queue before it is refused.
    """

    max_in_flight: int
    max_queued: int
    max_wait_s: float


def default_limits(max_batch_size: int, decode_workers: int, max_in_flight: int | None = None, max_queued: int | None = None,
                   max_wait_s: float = 30.0) -> AdmissionLimits:
    """Limits sized from the batcher's capacity: one batch in the model, one filling, every decoder child busy.

    With the defaults (batch 8, 2 decoders) 18 requests are in the model path and 72 more may wait:
    a concurrency-32 client is never refused, a burst several times the capacity is.
    """
    in_flight = max_in_flight if max_in_flight is not None else 2 * max(1, max_batch_size) + max(1, decode_workers)
    queued = max_queued if max_queued is not None else max(32, 4 * in_flight)
    return AdmissionLimits(max(1, in_flight), max(0, queued), max(0.0, max_wait_s))


class AdmissionControl:
    """The admission gate of one served model (one per service process; all its versions share the model path).

    Args:
        model: the model name in metrics and messages.
        limits: `AdmissionLimits`.
        metrics: a `mmapps.serve.state.MetricsSink`; its ``shed(model)`` is called per refusal when it has one.
    """

    def __init__(self, model: str, limits: AdmissionLimits, metrics: Any = None) -> None:
        self.model, self.limits, self.metrics = model, limits, metrics
        self.in_flight = 0
        self.shed = 0
        self._waiters: deque[asyncio.Future] = deque()
        self._hold_s: float | None = None

    @property
    def queued(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    def retry_after_s(self) -> int:
        """Seconds until the backlog ahead of a new request has drained (at least 1)."""
        hold = self._hold_s if self._hold_s is not None else 1.0
        backlog = self.in_flight + self.queued
        return max(1, min(120, math.ceil(hold * backlog / self.limits.max_in_flight)))

    def _refuse(self, why: str) -> ServeError:
        self.shed += 1
        if self.metrics is not None and hasattr(self.metrics, "shed"):
            self.metrics.shed(self.model)
        wait = self.retry_after_s()
        return ServeError(503, "overloaded", f"the {self.model} model is at capacity ({why}: {self.limits.max_in_flight} requests in progress, "
                          f"{self.limits.max_queued} may wait); retry after {wait} s (Retry-After), or ask the operator for more replicas "
                          "or higher --max-in-flight / --max-queued", {"Retry-After": str(wait)})

    async def _acquire(self) -> None:
        if self.in_flight < self.limits.max_in_flight and not self.queued:
            self.in_flight += 1
            return
        if self.queued >= self.limits.max_queued:
            raise self._refuse("queue full")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.limits.max_wait_s)
        except (asyncio.TimeoutError, asyncio.CancelledError) as err:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot was handed over just as the wait ended: pass it on
            else:
                waiter.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            if isinstance(err, asyncio.TimeoutError):
                raise self._refuse(f"waited {self.limits.max_wait_s:g} s for a slot") from None
            raise
        # the releaser counted this request in `in_flight` when it handed the slot over

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the oldest waiter; in_flight is unchanged
                return
        self.in_flight -= 1

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one model-path slot for the block (or raise the 503 `ServeError`)."""
        await self._acquire()
        start = time.perf_counter()
        try:
            yield
        finally:
            held = time.perf_counter() - start
            self._hold_s = held if self._hold_s is None else (1 - EWMA_WEIGHT) * self._hold_s + EWMA_WEIGHT * held
            self._release()
