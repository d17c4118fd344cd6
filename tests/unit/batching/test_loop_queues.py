"""LoopQueues: TF's batch formation on the event loop, run at the end of a loop iteration, at
a full batch, or at the open batch's deadline (a timer on the loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

import pytest

from servingd.batching.batch_scheduler import QueueOptions, QueueSpec
from servingd.batching.loop_queues import LoopQueues
from servingd.core.status import Code, ServingError
from tests.unit.batching.test_batch_scheduler import WAIT_SECONDS, Task, split


def spec(timeout_micros: int = 0, limit: int = 4, splitting: bool = False) -> QueueSpec[Task]:
    options = QueueOptions(
        input_batch_size_limit=8 if splitting else limit,
        max_execution_batch_size=limit,
        batch_timeout_micros=timeout_micros,
        max_enqueued_batches=2,
        enable_large_batch_splitting=splitting,
    )
    return QueueSpec(options, lambda tasks: None, split)


class Runs:
    """The run_batch callback: records (key, task names) per batch, and wakes a waiter."""

    def __init__(self) -> None:
        self.batches: list[tuple[Hashable, list[str]]] = []
        self.ran = asyncio.Event()

    def __call__(self, key: Hashable, _spec: QueueSpec[Task], tasks: list[Task]) -> None:
        self.batches.append((key, [t.name for t in tasks]))
        self.ran.set()


async def one_iteration() -> None:
    # The flush was call_soon'ed during this iteration: it runs before this task resumes.
    await asyncio.sleep(0)


def test_tasks_of_one_loop_iteration_run_as_one_batch_at_its_end() -> None:
    async def scenario() -> Runs:
        runs = Runs()
        queues: LoopQueues[Task] = LoopQueues(asyncio.get_running_loop(), runs)
        for name in "abc":
            queues.schedule("q", spec(), Task(1, name))
        assert runs.batches == []  # nothing runs inside the iteration that queued it
        assert queues.pending() == 3
        await one_iteration()
        assert queues.pending() == 0
        queues.schedule("q", spec(), Task(1, "d"))
        await one_iteration()
        return runs

    runs = asyncio.run(scenario())
    assert runs.batches == [("q", ["a", "b", "c"]), ("q", ["d"])]


def test_full_batches_close_and_each_queue_keeps_its_own() -> None:
    async def scenario() -> Runs:
        runs = Runs()
        queues: LoopQueues[Task] = LoopQueues(asyncio.get_running_loop(), runs)
        for name, size in [("a", 3), ("b", 2), ("c", 2)]:
            queues.schedule("q", spec(limit=4), Task(size, name))
        queues.schedule("other", spec(limit=4), Task(1, "x"))
        await one_iteration()
        return runs

    runs = asyncio.run(scenario())
    # b does not fit beside a (3 + 2 > 4): it opens the next batch, which c joins.
    assert runs.batches == [("q", ["a"]), ("q", ["b", "c"]), ("other", ["x"])]


def test_a_large_task_is_split_across_batches_when_splitting_is_on() -> None:
    async def scenario() -> Runs:
        runs = Runs()
        queues: LoopQueues[Task] = LoopQueues(asyncio.get_running_loop(), runs)
        queues.schedule("q", spec(limit=3, splitting=True), Task(1, "a"))
        queues.schedule("q", spec(limit=3, splitting=True), Task(5, "b"))
        await one_iteration()
        return runs

    runs = asyncio.run(scenario())
    assert runs.batches == [("q", ["a", "b.0"]), ("q", ["b.1"])]  # b: 2 + 3 rows


def test_an_open_batch_waits_for_its_timeout_on_a_loop_timer() -> None:
    async def scenario() -> tuple[Runs, float]:
        runs = Runs()
        loop = asyncio.get_running_loop()
        queues: LoopQueues[Task] = LoopQueues(loop, runs)
        started = loop.time()
        queues.schedule("q", spec(timeout_micros=20_000), Task(1, "a"))
        await one_iteration()
        assert runs.batches == []  # not full, not due: it waits
        await asyncio.wait_for(runs.ran.wait(), WAIT_SECONDS)
        return runs, loop.time() - started

    runs, waited = asyncio.run(scenario())
    assert runs.batches == [("q", ["a"])]
    assert waited >= 0.019  # not before its deadline (the timer may only be late)


def test_a_full_batch_runs_without_waiting_for_its_timeout() -> None:
    async def scenario() -> Runs:
        runs = Runs()
        queues: LoopQueues[Task] = LoopQueues(asyncio.get_running_loop(), runs)
        queues.schedule("q", spec(timeout_micros=60_000_000, limit=2), Task(1, "a"))
        queues.schedule("q", spec(timeout_micros=60_000_000, limit=2), Task(1, "b"))
        queues.schedule("q", spec(timeout_micros=60_000_000, limit=2), Task(1, "c"))
        await one_iteration()
        assert queues.pending() == 1  # c waits in the new open batch
        queues.flush(closing=True)  # shutdown: whatever waits runs now
        assert queues.pending() == 0
        return runs

    runs = asyncio.run(scenario())
    assert runs.batches == [("q", ["a", "b"]), ("q", ["c"])]


def test_a_full_queue_is_unavailable_with_tfs_message() -> None:
    async def scenario() -> None:
        queues: LoopQueues[Task] = LoopQueues(asyncio.get_running_loop(), Runs())
        slow = spec(timeout_micros=60_000_000, limit=2)
        for name in "abcd":  # two full batches: max_enqueued_batches = 2
            queues.schedule("q", slow, Task(1, name))
        with pytest.raises(ServingError) as caught:
            queues.schedule("q", slow, Task(1, "e"))
        assert caught.value.code is Code.UNAVAILABLE
        assert "currently 2 batches enqueued and max_enqueued_batches is 2" in str(caught.value)
        queues.flush(closing=True)

    asyncio.run(scenario())
