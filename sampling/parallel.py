"""Ordered work on several threads in a bounded window: the frames of many files, and of many GOPs
of one file, decoded and preprocessed in parallel and delivered in their sequential order.

Work comes as *units* (`Unit`): a generator of thunks whose number is known up front. Advancing a
unit is its serial part (a decoder moving to the next wanted frame, a picture opened); each thunk
it yields is an independent part (preprocessing one picture). Threads, not processes: PyAV decodes
and converts to RGB, and Pillow resamples, with the GIL released (benchmarks/RESULTS.md, Frame
sampling), and a thread hands a 336² tensor over without copying it.

Scheduling, under one lock: a free thread takes the runnable task with the lowest sequence number,
either a thunk waiting to run or the next step of a parked unit whose next item is inside the
window (`sequence < delivered + window`). So at most `window` items are produced and not yet
delivered, the earliest work goes first, and the steps of one unit never overlap (a unit is parked
or held by one thread). It cannot deadlock: the earliest undelivered item is always inside the
window, and its unit or thunk is runnable or running.

An exception raised by a step or a thunk reaches the consumer at that item's place, after every
earlier item, as it would in a sequential loop. Closing the iterator (or such an error) stops the
threads after their current task and closes every unit's generator (its files with it).
"""

from __future__ import annotations

import heapq
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
Thunk = Callable[[], T]

# Decoding threads by default: the machine's cores, capped (past 8, one video's GOPs and the
# vision tower rarely keep more busy, and each thread holds a decoder and a few frames).
MAX_DEFAULT_WORKERS = 8


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# Pictures each worker may have decoded ahead of the consumer: enough for a worker to be in the
# next GOP while the current one's frames are preprocessed (a 1.35 MB tensor each at 336 px).
WINDOW_PER_WORKER = 8


def decode_window(batch_size: int, workers: int) -> int:
    """How many pictures `workers` decoding threads may hold made but not yet taken (several
    workers only: one decodes in the consumer's own loop), for a consumer taking `batch_size`."""
    return max(batch_size, WINDOW_PER_WORKER * workers) if workers > 1 else 0


def default_decode_workers() -> int:
    """The cores this process may run on, at most `MAX_DEFAULT_WORKERS`."""
    return min(available_cores(), MAX_DEFAULT_WORKERS)


@dataclass(frozen=True)
class Unit(Generic[T]):
    """`size` items made by `start()`, a generator of thunks, each returning one item. `start` runs
    on a worker thread (opening a file is work too)."""

    size: int
    start: Callable[[], Iterator[Thunk[T]]]


@dataclass(eq=False)
class _Running:
    unit: Unit
    first: int  # sequence number of the unit's first item
    steps: Iterator[Thunk] | None = None
    made: int = 0  # items yielded so far

    @property
    def next_sequence(self) -> int:
        return self.first + self.made


@dataclass(order=True)
class _Task:
    sequence: int
    kind: int  # 0: run a thunk (first at equal sequence: it has no other way forward), 1: step a unit
    payload: object = field(compare=False)


class _Scheduler:
    """The shared state of one `iter_ordered` call (module docstring)."""

    def __init__(self, units: Sequence[Unit], window: int) -> None:
        self.window = window
        self.cond = threading.Condition()
        self.units: list[_Running] = []
        self.tasks: list[_Task] = []  # heap: thunks to run, parked units to step
        first = 0
        for unit in units:
            running = _Running(unit, first)
            self.units.append(running)
            if unit.size:
                self.tasks.append(_Task(first, 1, running))
            first += unit.size
        self.total = first
        heapq.heapify(self.tasks)
        self.results: dict[int, tuple[object, BaseException | None]] = {}
        self.delivered = 0
        self.busy_units = 0  # units being stepped: they may add tasks
        self.stopped = False

    def take(self) -> _Task | None:
        """The next task for a worker thread, waiting while none is runnable; None when done."""
        with self.cond:
            while not self.stopped:
                if self.tasks and (self.tasks[0].kind == 0 or self.tasks[0].sequence < self.delivered + self.window):
                    task = heapq.heappop(self.tasks)
                    self.busy_units += task.kind
                    return task
                if not self.tasks and not self.busy_units:
                    return None
                self.cond.wait()
            return None

    def step(self, running: _Running) -> None:
        """Advance a unit by one item: queue its thunk and park it again (or record its error)."""
        sequence = running.next_sequence
        thunk: Thunk | None = None
        error: BaseException | None = None
        try:
            if running.steps is None:
                running.steps = iter(running.unit.start())
            thunk = next(running.steps)
            if running.made + 1 == running.unit.size:
                _close(running)  # its last item: free the decoder now, not when everything is done
        except StopIteration:
            error = RuntimeError(f"a unit of work ended after {running.made} of its {running.unit.size} items")
        except BaseException as e:  # re-raised to the consumer at this item's place
            error = e
        with self.cond:
            self.busy_units -= 1
            if thunk is None:
                self.results[sequence] = (None, error)
            else:
                running.made += 1
                heapq.heappush(self.tasks, _Task(sequence, 0, thunk))
                if running.made < running.unit.size:
                    heapq.heappush(self.tasks, _Task(running.next_sequence, 1, running))
            self.cond.notify_all()

    def run_thunk(self, task: _Task) -> None:
        try:
            entry: tuple[object, BaseException | None] = (task.payload(), None)  # type: ignore[operator]
        except BaseException as e:
            entry = (None, e)
        with self.cond:
            self.results[task.sequence] = entry
            self.cond.notify_all()

    def work(self) -> None:
        """A worker thread's loop."""
        while (task := self.take()) is not None:
            if task.kind == 0:
                self.run_thunk(task)
            else:
                self.step(task.payload)  # type: ignore[arg-type]

    def deliver(self, sequence: int) -> object:
        """The item at `sequence` once made (its error raised), moving the window on."""
        with self.cond:
            while sequence not in self.results:
                self.cond.wait()
            value, error = self.results.pop(sequence)
            self.delivered = sequence + 1
            self.cond.notify_all()
        if error is not None:
            raise error
        return value

    def stop(self, threads: Sequence[threading.Thread]) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
        for thread in threads:
            thread.join()
        for running in self.units:  # no thread runs them any more: close their files here
            _close(running)


def _close(running: _Running) -> None:
    steps, running.steps = running.steps, None
    if steps is not None and hasattr(steps, "close"):
        steps.close()


def iter_units(units: Sequence[Unit[T]], *, workers: int, window: int) -> Iterator[T]:
    """`iter_ordered`, or with one worker the same items made in the caller's thread."""
    if workers > 1:
        return iter_ordered(units, workers=workers, window=window)
    return (thunk() for unit in units for thunk in unit.start())


def iter_ordered(units: Sequence[Unit[T]], *, workers: int, window: int) -> Iterator[T]:
    """Every item of `units`, in order (unit by unit, each in its own order), made by `workers`
    threads with at most `window` (>= 1) items made and not yet delivered. Threads start at the
    first `next()` and end when the iterator is exhausted, closed or raises."""
    scheduler = _Scheduler(units, max(1, window))
    threads = [
        threading.Thread(target=scheduler.work, name=f"longllava-decode-{n}", daemon=True)
        for n in range(max(1, workers))
    ]
    for thread in threads:
        thread.start()
    try:
        for sequence in range(scheduler.total):
            yield scheduler.deliver(sequence)  # type: ignore[misc]
    finally:
        scheduler.stop(threads)
