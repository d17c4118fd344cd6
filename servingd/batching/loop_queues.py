"""LoopQueues: batch queues kept on the event loop, for batches cheap enough to run there.

TF's batch threads form batches while they are busy: requests that arrive during a run wait
in the queue and go together into the next. That pays when the run is what limits
throughput. When it is not (an `mlp` run of ~0.14 ms beside ~0.3 ms of the event loop's own
work per request, on 2 cores), a free batch thread takes each request as a batch of about
one, and the hand-off to it and back (a thread wake-up, the GIL passed twice, a wake-up of
the loop) costs more than the run: `mlp` at c=16 answered 0.7x the requests it answered with
batching off (bench/README.md).

So BatchingSession keeps the queues of batches that are known cheap (RunPlacement's rule,
by the batch's run kind) here, on the event loop: a request joins the open batch of its
queue, and a batch runs once it may by TF's rules (BatchQueue's: full, closed, or its
`batch_timeout_micros` ran out): at the end of the loop iteration in which it became
runnable, or from a timer on the loop for the deadline. With a timeout of 0 a batch holds
what arrived in one iteration of the loop. BatchingSession decides, batch by batch, whether
it runs inline or goes to the batch threads as formed.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from servingd.batching.batch_scheduler import BatchQueue, BatchTask, QueueSpec

T = TypeVar("T", bound=BatchTask)

# Called with each batch that may run: (queue key, the queue's spec, the batch's tasks).
RunBatch = Callable[[Any, QueueSpec[T], list[T]], None]


class LoopQueues(Generic[T]):
    """Used from the thread of its event loop only; needs no lock."""

    def __init__(self, loop: asyncio.AbstractEventLoop, run_batch: RunBatch[T]) -> None:
        # Weakly: BatchingSession keys its LoopQueues by loop in a WeakKeyDictionary.
        self._loop = weakref.ref(loop)
        self._run_batch = run_batch
        self._queues: dict[Hashable, BatchQueue[T]] = {}
        self._flush: asyncio.Handle | None = None  # this iteration's flush, once scheduled
        self._timer: asyncio.TimerHandle | None = None  # for the earliest open-batch deadline
        self._timer_ns = 0  # that deadline (monotonic ns), while _timer is set

    def schedule(self, key: Hashable, spec: QueueSpec[T], task: T) -> None:
        """Adds `task` to the queue for `key`. Raises as BatchQueue.schedule does
        (InvalidArgument over the input limit, Unavailable when the queue is full)."""
        now = time.monotonic_ns()
        queue = self._queues.get(key)
        if queue is None:
            queue = BatchQueue(spec)
            queue.schedule(task, now)
            self._queues[key] = queue  # only once it holds a task, as the scheduler's
        else:
            queue.schedule(task, now)
        if queue.has_runnable_batch(now, closing=False):
            if self._flush is None:
                self._flush = self.loop.call_soon(self.flush)
        elif (deadline := queue.deadline_ns()) is not None:
            self._arm(deadline, now)

    def flush(self, closing: bool = False) -> None:
        """Runs every batch that may run now (with `closing`, every queued one)."""
        self._flush = None
        now = time.monotonic_ns()
        ready = []
        for key, queue in list(self._queues.items()):
            while (batch := queue.take_batch(now, closing)) is not None:
                ready.append((key, queue.spec, batch.tasks))
            if queue.is_empty():
                del self._queues[key]
        deadlines = [d for q in self._queues.values() if (d := q.deadline_ns()) is not None]
        self._arm(min(deadlines, default=None), now)
        for key, spec, tasks in ready:
            self._run_batch(key, spec, tasks)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop()
        if loop is None:  # only a caller on the loop schedules, so it is alive then
            raise RuntimeError("the event loop of these queues is gone")
        return loop

    def pending(self) -> int:
        """Tasks waiting in these queues (for tests; from the loop's thread)."""
        return sum(len(batch.tasks) for q in self._queues.values() for batch in q.batches)

    def _arm(self, deadline_ns: int | None, now_ns: int) -> None:
        """Keeps the timer at the earliest deadline (a timer that fires early finds nothing
        to run and re-arms; one that fires late only delays)."""
        if deadline_ns is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        if self._timer is not None:
            if self._timer_ns <= deadline_ns:
                return
            self._timer.cancel()
        self._timer_ns = deadline_ns
        self._timer = self.loop.call_later(max(0, deadline_ns - now_ns) / 1e9, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()
