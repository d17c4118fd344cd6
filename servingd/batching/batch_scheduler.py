"""SharedBatchScheduler: forms batches per queue and runs them on one shared pool of threads.

TF Serving's design (`shared_batch_scheduler.h`): every (model version, signature) gets its own
queue, all queues share `num_batch_threads` batch threads, and a thread that is free takes the
next batch round robin across queues. A queue is a deque of batches whose back one is open;
a batch may run when it is closed or full, or when the oldest task of the open batch has waited
`batch_timeout_micros` (deadline = its enqueue time + timeout, on the monotonic clock).

Unlike TF, whose idle threads re-check every millisecond, idle threads here sleep until
something can run: one idle thread (the leader) sleeps until the earliest open-batch deadline,
the others without a deadline. A change to the queues wakes one sleeping thread for a batch
that became runnable, and the leader only when a deadline earlier than its own appears. An
idle scheduler therefore uses no CPU.

Queues are created on first use and dropped once empty, so a version's queues go away with its
traffic; a request keeps its version loaded (it holds a ServableHandle) until its batch ran.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from servingd.core.status import InvalidArgument, Unavailable

logger = logging.getLogger(__name__)


class BatchTask(Protocol):
    @property
    def size(self) -> int:
        """Rows this task adds to a batch (its inputs' 0th dimension)."""
        ...


T = TypeVar("T", bound=BatchTask)


@dataclass(frozen=True, slots=True)
class QueueOptions:
    """TF's SharedBatchScheduler::QueueOptions (the subset BatchingParameters sets)."""

    input_batch_size_limit: int
    max_execution_batch_size: int
    batch_timeout_micros: int
    max_enqueued_batches: int
    enable_large_batch_splitting: bool = False


@dataclass(frozen=True, slots=True)
class QueueSpec(Generic[T]):
    """How to build a queue the first time its key is scheduled to.

    `process_batch` runs on a batch thread with the batch's tasks in arrival order and must
    answer every task itself; it must not raise. `split_task(task, first_size, max_size)`
    returns parts of sizes first_size (if > 0), then at most max_size each, adding up to
    task.size; it is needed only with large-batch splitting.
    """

    options: QueueOptions
    process_batch: Callable[[list[T]], object]
    split_task: Callable[[T, int, int], list[T]] | None = None


class _Batch(Generic[T]):
    __slots__ = ("size", "tasks")

    def __init__(self) -> None:
        self.tasks: list[T] = []
        self.size = 0


class BatchQueue(Generic[T]):
    """TF's internal::Queue. Not thread-safe: the scheduler's lock guards every call (a
    LoopQueues queue is used from its event loop's thread only)."""

    def __init__(self, spec: QueueSpec[T]) -> None:
        self.spec = spec
        self.batches: deque[_Batch[T]] = deque([_Batch()])
        # When the first task entered the open (back) batch; meaningful while it has tasks.
        self.open_batch_start_ns = 0

    def schedule(self, task: T, now_ns: int) -> None:
        """Adds `task` (split, if it must be and may be) to the open batch, or new ones."""
        options = self.spec.options
        limit = options.max_execution_batch_size
        size = task.size
        if size > options.input_batch_size_limit:
            raise InvalidArgument(
                f"Task size {size} is larger than maximum input batch size "
                f"{options.input_batch_size_limit}"
            )
        open_size = self.batches[-1].size
        if options.enable_large_batch_splitting:
            capacity = (options.max_enqueued_batches - len(self.batches)) * limit + (
                limit - open_size
            )
            if size > capacity:
                raise Unavailable(
                    "The batch scheduling queue to which this task was submitted is full; "
                    f"task size is {size} but scheduling capacity is only {capacity} "
                    f"(num_enqueued_batches={len(self.batches)}, "
                    f"max_enqueued_batches={options.max_enqueued_batches}, "
                    f"open_batch_size={open_size}, max_execution_batch_size={limit})"
                )
        elif (
            open_size + size > options.input_batch_size_limit
            and len(self.batches) >= options.max_enqueued_batches
        ):
            raise Unavailable(
                "The batch scheduling queue to which this task was submitted is full; "
                f"currently {len(self.batches)} batches enqueued and max_enqueued_batches is "
                f"{options.max_enqueued_batches}"
            )
        parts = [task]
        if options.enable_large_batch_splitting and size > limit - open_size:
            assert self.spec.split_task is not None
            parts = self.spec.split_task(task, limit - open_size, limit)
        for part in parts:
            if self.batches[-1].size + part.size > limit:
                self.batches.append(_Batch())
            open_batch = self.batches[-1]
            if not open_batch.tasks:
                self.open_batch_start_ns = now_ns
            open_batch.tasks.append(part)
            open_batch.size += part.size

    def add_closed_batch(self, tasks: list[T]) -> None:
        """A batch formed elsewhere (LoopQueues), runnable at once: it goes before the open
        batch. It was admitted where it was formed, so no limit is checked again."""
        batch: _Batch[T] = _Batch()
        batch.tasks = tasks
        batch.size = sum(task.size for task in tasks)
        self.batches.insert(len(self.batches) - 1, batch)

    def deadline_ns(self) -> int | None:
        if len(self.batches) > 1 or not self.batches[-1].tasks:
            return None  # nothing waits on a timer: a closed batch can run now, or no tasks
        return self.open_batch_start_ns + self.spec.options.batch_timeout_micros * 1000

    def has_runnable_batch(self, now_ns: int, closing: bool) -> bool:
        if len(self.batches) > 1:
            return True
        open_batch = self.batches[-1]
        if not open_batch.tasks:
            return False
        if closing or open_batch.size >= self.spec.options.max_execution_batch_size:
            return True
        deadline = self.deadline_ns()
        return deadline is not None and now_ns >= deadline

    def take_batch(self, now_ns: int, closing: bool) -> _Batch[T] | None:
        if not self.has_runnable_batch(now_ns, closing):
            return None
        if len(self.batches) == 1:
            self.batches.append(_Batch())  # close the open batch
        return self.batches.popleft()

    def is_empty(self) -> bool:
        return len(self.batches) == 1 and not self.batches[0].tasks


class SharedBatchScheduler(Generic[T]):
    """`schedule` may be called from any thread (the event loop included: it never blocks
    beyond a short critical section). `stop` runs what is queued, then ends the threads."""

    def __init__(self, num_batch_threads: int, thread_pool_name: str = "batch_threads") -> None:
        if num_batch_threads < 1:
            raise InvalidArgument(f"num_batch_threads must be positive; was {num_batch_threads}")
        self._lock = threading.Lock()
        # The leader waits on _timer until the earliest deadline; other idle threads on _idle.
        self._timer = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        # Guarded by _lock. Served round robin: a queue moves to the end once it gave a batch.
        self._queues: OrderedDict[Hashable, BatchQueue[T]] = OrderedDict()
        self._leader: int | None = None
        # Threads asleep with no wake-up on its way: followers on _idle, the leader on _timer.
        # Notifiers count them down, so a notify is only sent to a thread that will act on it.
        self._asleep_followers = 0
        self._leader_asleep = False
        self._leader_deadline: int | None = None  # when the sleeping leader will wake itself
        self._stopping = False
        # Times an idle batch thread woke up; lets tests show that idle threads stay asleep.
        self.wakeups = 0
        self._threads = [
            threading.Thread(target=self._thread_logic, name=f"{thread_pool_name}_{i}", daemon=True)
            for i in range(num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def schedule(self, key: Hashable, spec: QueueSpec[T], task: T) -> None:
        """Enqueues `task` on the queue for `key` (built from `spec` if new). Raises
        InvalidArgument for a task over the input limit, Unavailable when the queue is full."""
        with self._lock:
            if self._stopping:
                raise Unavailable("The batch scheduler is shutting down")
            now = time.monotonic_ns()
            queue = self._queues.get(key)
            if queue is None:
                queue = BatchQueue(spec)
                queue.schedule(task, now)
                self._queues[key] = queue  # only once it holds a task: empty queues never linger
            else:
                queue.schedule(task, now)
            self._notify_locked(now)

    def schedule_batch(self, key: Hashable, spec: QueueSpec[T], tasks: list[T]) -> None:
        """Runs a batch formed elsewhere (LoopQueues) as it is, on the next free thread.
        Raises Unavailable when the scheduler is shutting down."""
        with self._lock:
            if self._stopping:
                raise Unavailable("The batch scheduler is shutting down")
            queue = self._queues.get(key)
            if queue is None:
                queue = BatchQueue(spec)
                self._queues[key] = queue
            queue.add_closed_batch(tasks)
            self._notify_locked(time.monotonic_ns())

    def stop(self, timeout_seconds: float = 30.0) -> None:
        """Refuses new tasks, runs every queued one without waiting for timeouts, and joins
        the threads (bounded by `timeout_seconds` in all)."""
        with self._lock:
            self._stopping = True
            self._asleep_followers = 0
            self._leader_asleep = False
            self._timer.notify_all()
            self._idle.notify_all()
        deadline = time.monotonic() + timeout_seconds
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            logger.warning("Batch threads still running after %.1f s: %s", timeout_seconds, alive)

    # ----- batch threads ---------------------------------------------------------------------

    def _thread_logic(self) -> None:
        me = threading.get_ident()
        while True:
            with self._lock:
                work = self._wait_for_work_locked(me)
            if work is None:
                return
            process_batch, tasks = work
            try:
                process_batch(tasks)
            except Exception:  # the contract says it answers its tasks; never lose the thread
                logger.exception("Processing a batch of %d task(s) failed", len(tasks))

    def _wait_for_work_locked(self, me: int) -> tuple[Callable[[list[T]], object], list[T]] | None:
        while True:
            now = time.monotonic_ns()
            work = self._take_batch_locked(now)
            if work is not None:
                if self._leader == me:
                    self._leader = None
                # What is left may need another thread, or a new leader for its deadline.
                self._notify_locked(now)
                return work
            if self._stopping and not self._queues:
                return None
            if self._leader is None or self._leader == me:
                self._leader = me
                self._leader_deadline = self._earliest_deadline_locked()
                self._leader_asleep = True
                deadline = self._leader_deadline
                # Waking early is harmless (the loop re-checks the clock), late is not.
                self._timer.wait(None if deadline is None else (deadline - now) / 1e9)
                self._leader_asleep = False
            else:
                self._asleep_followers += 1
                self._idle.wait()  # no timeout: only a notify (which counted us down) wakes it
            self.wakeups += 1

    def _take_batch_locked(self, now: int) -> tuple[Callable[[list[T]], object], list[T]] | None:
        for key, queue in self._queues.items():
            batch = queue.take_batch(now, self._stopping)
            if batch is None:
                continue
            if queue.is_empty():
                del self._queues[key]
            else:
                self._queues.move_to_end(key)
            return queue.spec.process_batch, batch.tasks
        return None

    def _notify_locked(self, now: int) -> None:
        """After the queues changed: a runnable batch gets a sleeping thread woken for it, and
        the earliest deadline a leader that sleeps no later than it. Threads that are awake
        look at the queues before they sleep again, so they need no notice."""
        if any(q.has_runnable_batch(now, self._stopping) for q in self._queues.values()):
            if self._asleep_followers:
                self._wake_follower_locked()
            else:
                self._wake_sleeping_leader_locked()
        deadline = self._earliest_deadline_locked()
        if deadline is None:
            return
        if self._leader is not None:
            planned = self._leader_deadline
            if planned is None or deadline < planned:
                self._wake_sleeping_leader_locked()
        elif self._asleep_followers:
            self._wake_follower_locked()  # it becomes the leader

    def _earliest_deadline_locked(self) -> int | None:
        deadlines = [d for q in self._queues.values() if (d := q.deadline_ns()) is not None]
        return min(deadlines, default=None)

    def _wake_follower_locked(self) -> None:
        self._asleep_followers -= 1
        self._idle.notify()

    def _wake_sleeping_leader_locked(self) -> None:
        if self._leader_asleep:
            self._leader_asleep = False
            self._timer.notify()

    def idle_threads(self) -> int:
        """Batch threads asleep with no wake-up on its way (for tests and diagnostics)."""
        with self._lock:
            return self._asleep_followers + int(self._leader_asleep)
