"""Run an iterator a few items ahead in a background thread (``watch``: decode while the model scores).

FFmpeg decodes and PyTorch computes with the GIL released, so on a machine with a free core the
next window is decoded while the current one is scored and a stream's wall time approaches the
larger of the two instead of their sum. The items and their order are those of the iterator
itself (results are unchanged); memory is bounded by ``depth`` items.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetched(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield ``items`` in order, produced by a daemon thread up to ``depth`` items ahead.

    An exception raised by the iterator is re-raised here, in the consumer, at its place in the
    sequence. Closing this generator early (or an error in the consumer) stops the producer and
    closes ``items`` (so its files are released).
    """
    buffer: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(value: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as err:  # handed to the consumer, which raises it
            put(_Failure(err))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="mmapps-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            value = buffer.get()
            if value is _DONE:
                return
            if isinstance(value, _Failure):
                raise value.error
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()
