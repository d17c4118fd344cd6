"""SharedBatchScheduler and its queues: TF's batch formation, timeouts, limits and messages."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest

from servingd.batching.batch_scheduler import (
    BatchQueue,
    QueueOptions,
    QueueSpec,
    SharedBatchScheduler,
)
from servingd.core.status import Code, InvalidArgument, ServingError, Unavailable

WAIT_SECONDS = 10.0  # upper bound for anything a test waits on: a hang fails, never blocks


@dataclass
class Task:
    size: int
    name: str = ""
    done: threading.Event = field(default_factory=threading.Event)
    answered_at: float = 0.0


def split(task: Task, first: int, limit: int) -> list[Task]:
    sizes = [min(first, task.size)] if first > 0 else []
    while sum(sizes) < task.size:
        sizes.append(min(limit, task.size - sum(sizes)))
    return [Task(s, f"{task.name}.{i}") for i, s in enumerate(sizes)]


def options(**overrides: int | bool) -> QueueOptions:
    values: dict[str, int | bool] = dict(
        input_batch_size_limit=4,
        max_execution_batch_size=4,
        batch_timeout_micros=1000,
        max_enqueued_batches=3,
    )
    values.update(overrides)
    return QueueOptions(**values)  # type: ignore[arg-type]


class Recorder:
    """A process_batch that records batches and can hold the batch thread at a gate."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)

    def __call__(self, tasks: list[Task]) -> None:
        self.entered.release()
        assert self.gate.wait(WAIT_SECONDS)
        with self.lock:
            self.batches.append([t.name for t in tasks])
        now = time.monotonic()
        for task in tasks:
            task.answered_at = now
            task.done.set()


# ----- one queue, driven with explicit clock values -------------------------------------------


def queue(**overrides: int | bool) -> BatchQueue[Task]:
    return BatchQueue(QueueSpec(options(**overrides), lambda tasks: None, split))


def test_deadline_is_first_enqueue_plus_timeout_exactly() -> None:
    q = queue(batch_timeout_micros=1500)
    t0 = 1_000_000_000
    q.schedule(Task(1), t0)
    q.schedule(Task(1), t0 + 900_000)  # later tasks do not move the deadline
    assert q.deadline_ns() == t0 + 1_500_000
    assert not q.has_runnable_batch(t0 + 1_499_999, closing=False)
    assert q.has_runnable_batch(t0 + 1_500_000, closing=False)
    batch = q.take_batch(t0 + 1_500_000, closing=False)
    assert batch is not None and batch.size == 2
    assert q.is_empty() and q.deadline_ns() is None
    # The next batch's clock starts with its own first task.
    q.schedule(Task(1), t0 + 5_000_000)
    assert q.deadline_ns() == t0 + 6_500_000


def test_full_batch_runs_before_its_timeout_and_closing_flushes_at_once() -> None:
    q = queue(batch_timeout_micros=10**9)
    q.schedule(Task(3), 0)
    assert not q.has_runnable_batch(1, closing=False)
    assert q.has_runnable_batch(1, closing=True)
    q.schedule(Task(1), 1)
    assert q.has_runnable_batch(1, closing=False)


def test_task_that_does_not_fit_closes_the_open_batch() -> None:
    q = queue()
    q.schedule(Task(3, "a"), 0)
    q.schedule(Task(2, "b"), 0)
    assert [[t.name for t in b.tasks] for b in q.batches] == [["a"], ["b"]]
    assert q.has_runnable_batch(0, closing=False)  # the closed one, timeout or not
    first = q.take_batch(0, closing=False)
    assert first is not None and [t.name for t in first.tasks] == ["a"]


def test_oversized_task_is_invalid_argument_with_tf_message() -> None:
    with pytest.raises(InvalidArgument) as info:
        queue().schedule(Task(5), 0)
    assert info.value.message == "Task size 5 is larger than maximum input batch size 4"


def test_full_queue_is_unavailable_with_tf_message() -> None:
    q = queue(max_enqueued_batches=2)
    q.schedule(Task(4), 0)
    q.schedule(Task(3), 0)
    q.schedule(Task(1), 0)  # still fits the open batch
    with pytest.raises(Unavailable) as info:
        q.schedule(Task(1), 0)
    assert info.value.code == Code.UNAVAILABLE
    assert info.value.message == (
        "The batch scheduling queue to which this task was submitted is full; currently 2 "
        "batches enqueued and max_enqueued_batches is 2"
    )


def test_splitting_fills_the_open_batch_then_whole_batches() -> None:
    q = queue(
        input_batch_size_limit=12,
        max_execution_batch_size=4,
        enable_large_batch_splitting=True,
        max_enqueued_batches=5,
    )
    q.schedule(Task(1, "a"), 0)
    q.schedule(Task(10, "b"), 0)
    assert [[(t.name, t.size) for t in b.tasks] for b in q.batches] == [
        [("a", 1), ("b.0", 3)],
        [("b.1", 4)],
        [("b.2", 3)],
    ]


def test_splitting_refuses_what_exceeds_the_remaining_capacity() -> None:
    q = queue(
        input_batch_size_limit=12,
        max_execution_batch_size=4,
        enable_large_batch_splitting=True,
        max_enqueued_batches=2,
    )
    q.schedule(Task(3), 0)
    with pytest.raises(Unavailable) as info:
        q.schedule(Task(6), 0)
    assert info.value.message == (
        "The batch scheduling queue to which this task was submitted is full; task size is 6 "
        "but scheduling capacity is only 5 (num_enqueued_batches=1, max_enqueued_batches=2, "
        "open_batch_size=3, max_execution_batch_size=4)"
    )


# ----- the scheduler with real batch threads --------------------------------------------------


def spec(recorder: Recorder, **overrides: int | bool) -> QueueSpec[Task]:
    return QueueSpec(options(**overrides), recorder, split)


def wait_all(tasks: list[Task]) -> None:
    for task in tasks:
        assert task.done.wait(WAIT_SECONDS), f"task {task.name} was never answered"


def test_lone_task_runs_after_the_timeout_not_before() -> None:
    timeout_micros = 200_000
    recorder = Recorder()
    scheduler: SharedBatchScheduler[Task] = SharedBatchScheduler(2)
    try:
        task = Task(1, "lone")
        started = time.monotonic()
        scheduler.schedule("q", spec(recorder, batch_timeout_micros=timeout_micros), task)
        wait_all([task])
        # A lower bound only: how late it may be depends on the machine, never how early.
        assert task.answered_at - started >= timeout_micros / 1e6
        assert recorder.batches == [["lone"]]
    finally:
        scheduler.stop()


def test_a_deadline_revealed_by_taking_a_batch_is_watched() -> None:
    # The split leaves a closed batch and an open one behind it; the open batch's deadline only
    # counts once the closed one is taken, and the sleeping leader must learn of it then.
    recorder = Recorder()
    scheduler: SharedBatchScheduler[Task] = SharedBatchScheduler(2)
    try:
        queue_spec = spec(
            recorder,
            batch_timeout_micros=20_000,
            input_batch_size_limit=8,
            max_execution_batch_size=2,
            enable_large_batch_splitting=True,
        )
        task = Task(3, "t")
        scheduler.schedule("q", queue_spec, task)
        deadline = time.monotonic() + WAIT_SECONDS
        while len(recorder.batches) < 2:
            assert time.monotonic() < deadline, f"only ran {recorder.batches}"
            time.sleep(0.001)
        assert recorder.batches == [["t.0"], ["t.1"]]
    finally:
        scheduler.stop()


def test_tasks_queue_up_while_every_thread_is_busy() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    scheduler: SharedBatchScheduler[Task] = SharedBatchScheduler(1)
    try:
        queue_spec = spec(
            recorder, batch_timeout_micros=0, input_batch_size_limit=8, max_execution_batch_size=8
        )
        tasks = [Task(1, f"t{i}") for i in range(5)]
        scheduler.schedule("q", queue_spec, tasks[0])
        assert recorder.entered.acquire(timeout=WAIT_SECONDS)  # the only thread holds t0
        for task in tasks[1:]:
            scheduler.schedule("q", queue_spec, task)
        recorder.gate.set()
        wait_all(tasks)
        assert recorder.batches == [["t0"], ["t1", "t2", "t3", "t4"]]
    finally:
        scheduler.stop()


def test_queues_share_threads_round_robin() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    scheduler: SharedBatchScheduler[Task] = SharedBatchScheduler(1)
    try:
        blocker = Task(4, "x")
        scheduler.schedule("x", spec(recorder, batch_timeout_micros=0), blocker)
        assert recorder.entered.acquire(timeout=WAIT_SECONDS)  # the only thread is busy
        queued = []
        for name in ("a", "b"):
            for i in range(3):
                task = Task(4, f"{name}{i}")  # full batches: each runnable on its own
                scheduler.schedule(name, spec(recorder, batch_timeout_micros=0), task)
                queued.append(task)
        recorder.gate.set()
        wait_all([blocker, *queued])
        # A queue that just gave a batch waits for the others' turn (TF's round robin).
        assert recorder.batches == [["x"], ["a0"], ["b0"], ["a1"], ["b1"], ["a2"], ["b2"]]
    finally:
        scheduler.stop()


def test_idle_threads_sleep() -> None:
    recorder = Recorder()
    scheduler: SharedBatchScheduler[Task] = SharedBatchScheduler(3)
    try:
        tasks = [Task(1, str(i)) for i in range(4)]
        for task in tasks:
            scheduler.schedule("q", spec(recorder, batch_timeout_micros=0), task)
        wait_all(tasks)
        deadline = time.monotonic() + WAIT_SECONDS
        while scheduler.idle_threads() < 3:  # threads finishing their last batch
            assert time.monotonic() < deadline, "batch threads never went idle"
            time.sleep(0.001)
        before = scheduler.wakeups
        # Observing that nothing happens needs some time to pass; this waits on no result.
        time.sleep(0.3)
        assert scheduler.wakeups == before
        assert scheduler.idle_threads() == 3
    finally:
        scheduler.stop()


def test_stop_runs_queued_tasks_without_waiting_and_refuses_new_ones() -> None:
    recorder = Recorder()
    scheduler: SharedBatchScheduler[Task] = SharedBatchScheduler(2)
    waiting = Task(1, "waiting")
    scheduler.schedule("q", spec(recorder, batch_timeout_micros=3600 * 10**6), waiting)
    scheduler.stop()
    assert waiting.done.is_set()
    with pytest.raises(ServingError) as info:
        scheduler.schedule("q", spec(recorder), Task(1))
    assert info.value.code == Code.UNAVAILABLE


def test_invalid_thread_count() -> None:
    with pytest.raises(InvalidArgument, match="num_batch_threads must be positive; was 0"):
        SharedBatchScheduler(0)


def test_a_batch_formed_elsewhere_runs_as_it_is_before_the_open_batch() -> None:
    recorder = Recorder()
    scheduler: SharedBatchScheduler[Task] = SharedBatchScheduler(1)
    try:
        slow = spec(recorder, batch_timeout_micros=3600 * 10**6)
        waiting = Task(1, "open")
        scheduler.schedule("q", slow, waiting)
        formed = [Task(2, "a"), Task(2, "b"), Task(1, "c")]  # 5 rows: no limit is checked again
        scheduler.schedule_batch("q", slow, formed)
        wait_all(formed)
        assert recorder.batches == [["a", "b", "c"]]
        assert not waiting.done.is_set()  # the open batch still waits for its timeout
    finally:
        scheduler.stop()
    assert recorder.batches == [["a", "b", "c"], ["open"]]
    with pytest.raises(ServingError) as info:
        scheduler.schedule_batch("q", spec(recorder), [Task(1)])
    assert info.value.code == Code.UNAVAILABLE
