"""One asyncio micro-batcher per model version: requests queue, the first waits at most ``max_delay``.

A request is a list of samples (usually one). The worker takes the first request, then keeps
taking queued ones while the batch holds fewer than ``max_batch_size`` samples and the first
request has waited less than ``max_delay_ms``; the batch runs in a worker thread (the event loop
keeps answering health checks), and each request gets back its own predictions in order. A
request larger than the batch size runs alone. Batch size and queue time go to the metrics.
Samples are independent in every mmapps model in eval mode (padding is masked), so a sample's
scores do not depend on its batch neighbours (tested).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Pending:
    samples: Sequence[Any]
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass
class _Worker:
    queue: asyncio.Queue
    task: asyncio.Task


class MicroBatcher:
    """Batch concurrent requests for ``predict(samples) -> list`` (one output per sample).

    Args:
        predict: the model call, run in a thread (`mmapps.serve.runner.ModelRunner.predict`).
        name: model name for the metrics.
        version: version name for the metrics.
        max_batch_size: most samples per call (1: no batching).
        max_delay_ms: how long the first request of a batch waits for company.
        metrics: a `mmapps.serve.state.MetricsSink`.
    """

    def __init__(self, predict: Callable[[Sequence[Any]], list], name: str, version: str, max_batch_size: int, max_delay_ms: float, metrics: Any) -> None:
        self.predict, self.name, self.version = predict, name, version
        self.max_batch_size, self.max_delay = max(1, max_batch_size), max(0.0, max_delay_ms) / 1000
        self.metrics = metrics
        self._workers: dict[asyncio.AbstractEventLoop, _Worker] = {}
        self.batches: list[int] = []  # sizes of the last batches (tests, benchmarks)

    async def submit(self, samples: Sequence[Any]) -> list:
        """Queue ``samples`` and wait for their predictions (in order)."""
        loop = asyncio.get_running_loop()
        worker = self._workers.get(loop)
        if worker is None or worker.task.done():  # one worker per event loop (a test may run several)
            queue: asyncio.Queue[_Pending] = asyncio.Queue()
            worker = _Worker(queue, loop.create_task(self._run(queue)))
            self._workers[loop] = worker
        future = loop.create_future()
        await worker.queue.put(_Pending(list(samples), future))
        return await future

    async def _run(self, queue: asyncio.Queue) -> None:
        carry: _Pending | None = None
        while True:
            first = carry or await queue.get()
            carry = None
            batch, size = [first], len(first.samples)
            deadline = first.queued_at + self.max_delay
            while size < self.max_batch_size:
                remaining = deadline - time.perf_counter()
                try:
                    item = queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(queue.get(), remaining)
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
                if size + len(item.samples) > self.max_batch_size:
                    carry = item  # starts the next batch
                    break
                batch.append(item)
                size += len(item.samples)
            await self._execute(batch, size)

    async def _execute(self, batch: list[_Pending], size: int) -> None:
        started = time.perf_counter()
        for item in batch:
            self.metrics.batch(self.name, size, started - item.queued_at)
        self.batches = [*self.batches[-999:], size]
        samples = [s for item in batch for s in item.samples]
        try:
            outputs = await asyncio.to_thread(self.predict, samples)
        except Exception as err:  # the error belongs to these requests only
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(err)
            return
        start = 0
        for item in batch:
            if not item.future.done():
                item.future.set_result(outputs[start : start + len(item.samples)])
            start += len(item.samples)

    async def close(self) -> None:
        worker = self._workers.pop(asyncio.get_running_loop(), None)
        if worker is not None:
            worker.task.cancel()
