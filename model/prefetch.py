"""Run an iterator in a background thread, a bounded number of items ahead of its consumer.

Frame decoding (PyAV, OpenCV and decord release the GIL) then overlaps with the model's compute,
and the queue bound keeps at most `max_ahead` decoded frames in memory.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


class Prefetcher(Iterator[T]):
    """Iterates `source` in a daemon thread. Errors raised by `source` are re-raised to the
    consumer at the position they happened; `close()` (or leaving a `with` block) stops the
    thread early. `busy_seconds`: time the thread spent producing items."""

    def __init__(self, source: Iterable[T], max_ahead: int = 8) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, max_ahead))
        self._stop = threading.Event()
        self.busy_seconds = 0.0
        self._finished = False
        self._thread = threading.Thread(target=self._produce, args=(iter(source),), daemon=True)
        self._thread.start()

    def _produce(self, source: Iterator[T]) -> None:
        try:
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    item = next(source)
                except StopIteration:
                    break
                finally:
                    self.busy_seconds += time.perf_counter() - start
                self._put((item, None))
        except BaseException as error:  # handed to the consumer, which re-raises it
            self._put((None, error))
        finally:
            # Stopped early: end the source here, in the thread that runs it (a generator's files,
            # a pool of decoding threads), not whenever it is collected.
            try:
                getattr(source, "close", lambda: None)()
            except BaseException as error:
                self._put((None, error))
            self._put((_DONE, None))

    def _put(self, entry: tuple) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return
            except queue.Full:
                continue

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        item, error = self._queue.get()
        if error is not None:
            self._finished = True
            self.close()
            raise error
        if item is _DONE:
            self._finished = True
            self._thread.join()
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
