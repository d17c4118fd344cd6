"""BatchingSession: merge, pad, run once, split back, with a deterministic fake model."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servingd.batching.batching_parameters import BatchingOptions
from servingd.batching.batching_session import BatchingSession
from servingd.core.status import Code, Internal, ServingError
from servingd.servables.onnx.onnx_servable import PreparedRun
from servingd.servables.onnx.signature import PREDICT_METHOD, Signature, TensorSpec

WAIT_SECONDS = 10.0
F32 = np.dtype(np.float32)


class FakeServable:
    """y = 2x + 1 row by row, so every output row shows which input row it came from.

    Records the rows of every run; `gate` can hold runs to let tasks queue up."""

    def __init__(
        self,
        input_shape: tuple[int, ...] | None = (-1, -1),
        output_shape: tuple[int, ...] | None = (-1, -1),
        output_rows: int | None = None,
        error: Exception | None = None,
    ) -> None:
        self._signature = Signature(
            PREDICT_METHOD,
            {"x": TensorSpec("x", F32, input_shape)},
            {"y": TensorSpec("y", F32, output_shape)},
        )
        self.output_rows = output_rows
        self.error = error
        self.lock = threading.Lock()
        self.runs: list[np.ndarray] = []
        self.threads: list[str] = []  # the thread of each run, in the order of `runs`
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)

    def signature(self, name: str) -> Signature:
        return self._signature

    def run(self, prepared: PreparedRun) -> dict[str, np.ndarray]:
        self.entered.release()
        assert self.gate.wait(WAIT_SECONDS)
        x = prepared.feeds["x"]
        with self.lock:
            self.runs.append(x.copy())
            self.threads.append(threading.current_thread().name)
        if self.error is not None:
            raise self.error
        y = x * 2 + 1
        if self.output_rows is not None:
            y = y[: self.output_rows]
        return {"y": y}


class CheapUpTo:
    """A RunPlace (RunPlacement's part that BatchingSession uses): runs of up to `rows` rows
    are known cheap, larger ones are not."""

    def __init__(self, rows: int) -> None:
        self.rows = rows

    def is_cheap(self, servable: Any, prepared: PreparedRun) -> bool:
        return prepared.batch_size <= self.rows

    def place(
        self, servable: Any, prepared: PreparedRun, run: Callable[[PreparedRun], Any]
    ) -> tuple[bool, Callable[[PreparedRun], Any]]:
        return self.is_cheap(servable, prepared), run


def prepared(x: np.ndarray) -> PreparedRun:
    return PreparedRun("serving_default", {"x": x}, ("y",), ("y",))


def rows(caller: int, size: int, width: int) -> np.ndarray:
    """Rows no other caller sends: caller * 1000 + row * 10 + column."""
    values = caller * 1000 + np.arange(size)[:, None] * 10 + np.arange(width)[None, :]
    return values.astype(np.float32)


async def run_all(
    session: BatchingSession, servable: FakeServable, inputs: Sequence[np.ndarray]
) -> list[Any]:
    calls = [session.run(servable, prepared(x)) for x in inputs]
    return await asyncio.wait_for(
        asyncio.gather(*calls, return_exceptions=True), timeout=WAIT_SECONDS
    )


@st.composite
def batching_cases(draw: st.DrawFn) -> tuple[BatchingOptions, list[tuple[int, int]]]:
    max_batch_size = draw(st.integers(1, 12))
    splitting = draw(st.booleans())
    execution_limit = draw(st.integers(1, max_batch_size)) if splitting else None
    smaller = draw(st.lists(st.integers(1, max_batch_size), max_size=3, unique=True))
    allowed = tuple(sorted({*smaller, max_batch_size})) if draw(st.booleans()) else ()
    options = BatchingOptions(
        max_batch_size=max_batch_size,
        batch_timeout_micros=draw(st.sampled_from([0, 500, 3000])),
        max_enqueued_batches=1000,
        num_batch_threads=draw(st.integers(1, 3)),
        allowed_batch_sizes=allowed,
        pad_variable_length_inputs=draw(st.booleans()),
        enable_large_batch_splitting=splitting,
        max_execution_batch_size=execution_limit,
    )
    callers = draw(
        st.lists(
            st.tuples(st.integers(1, max_batch_size), st.integers(1, 3)), min_size=1, max_size=24
        )
    )
    return options, callers


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=batching_cases(), on_loop=st.booleans())
def test_concurrent_callers_get_exactly_their_own_rows(
    case: tuple[BatchingOptions, list[tuple[int, int]]], on_loop: bool
) -> None:
    """On the batch threads, or (`on_loop`) in batches formed and run on the event loop."""
    options, callers = case
    servable = FakeServable()
    session = BatchingSession(options, placement=CheapUpTo(10**6) if on_loop else None)
    inputs = [rows(i, size, width) for i, (size, width) in enumerate(callers)]

    async def scenario() -> list[Any]:
        if on_loop:  # one run per queue on a batch thread: then its batches are known cheap
            widths = {x.shape[1] for x in inputs}
            await run_all(session, servable, [rows(99, 1, w) for w in sorted(widths)])
            servable.runs.clear()
            servable.threads.clear()
        return await run_all(session, servable, inputs)

    try:
        results = asyncio.run(scenario())
    finally:
        session.stop()
    if on_loop:
        assert set(servable.threads) == {threading.current_thread().name}
    for x, result in zip(inputs, results, strict=True):
        assert isinstance(result, dict), result
        y = result["y"]
        assert y.shape[0] == x.shape[0]  # exactly its rows: no padding row, none missing
        width = x.shape[1]
        np.testing.assert_array_equal(y[:, :width], x * 2 + 1)  # its own rows, in order
        if y.shape[1] > width:  # merged with wider inputs: padded with a first element
            assert options.pad_variable_length_inputs
            # TF's AddPadding fills with the padded tensor's first element: the caller's, or
            # that of the part of its rows that ran in that batch (when it was split).
            allowed = set((x[:, 0] * 2 + 1).tolist())
            for row in y[:, width:]:
                assert len(set(row.tolist())) == 1 and row[0] in allowed
    sizes = [run.shape[0] for run in servable.runs]
    if options.allowed_batch_sizes:
        assert set(sizes) <= set(options.allowed_batch_sizes)
    else:
        assert max(sizes) <= options.execution_batch_size_limit
    if not options.enable_large_batch_splitting:
        assert len(servable.runs) <= len(callers)  # a caller's rows are never split


def test_padding_rows_copy_the_last_tasks_first_row_and_never_reach_a_caller() -> None:
    servable = FakeServable()
    servable.gate.clear()
    session = BatchingSession(
        BatchingOptions(max_batch_size=8, allowed_batch_sizes=(4, 8), num_batch_threads=1)
    )
    try:

        async def scenario() -> list[Any]:
            blocker = asyncio.ensure_future(session.run(servable, prepared(rows(9, 8, 1))))
            await asyncio.to_thread(servable.entered.acquire, True, WAIT_SECONDS)
            first = asyncio.ensure_future(session.run(servable, prepared(rows(1, 2, 1))))
            second = asyncio.ensure_future(session.run(servable, prepared(rows(2, 3, 1))))
            await asyncio.sleep(0)  # both submitted while the only thread is busy
            servable.gate.set()
            return await asyncio.wait_for(asyncio.gather(blocker, first, second), WAIT_SECONDS)

        _, first, second = asyncio.run(scenario())
    finally:
        session.stop()
    merged = servable.runs[1]
    expected = np.concatenate([rows(1, 2, 1), rows(2, 3, 1), rows(2, 3, 1)[:1].repeat(3, axis=0)])
    np.testing.assert_array_equal(merged, expected)  # 5 rows padded up to 8
    np.testing.assert_array_equal(first["y"], rows(1, 2, 1) * 2 + 1)
    np.testing.assert_array_equal(second["y"], rows(2, 3, 1) * 2 + 1)


def test_different_inner_shapes_never_share_a_batch_without_padding() -> None:
    servable = FakeServable()
    servable.gate.clear()
    session = BatchingSession(BatchingOptions(max_batch_size=8, num_batch_threads=1))
    try:

        async def scenario() -> list[Any]:
            blocker = asyncio.ensure_future(session.run(servable, prepared(rows(9, 8, 1))))
            await asyncio.to_thread(servable.entered.acquire, True, WAIT_SECONDS)
            calls = [session.run(servable, prepared(rows(i, 1, w))) for i, w in enumerate([2, 3])]
            tasks = [asyncio.ensure_future(c) for c in calls]
            await asyncio.sleep(0)
            servable.gate.set()
            return await asyncio.wait_for(asyncio.gather(blocker, *tasks), WAIT_SECONDS)

        results = asyncio.run(scenario())
    finally:
        session.stop()
    assert sorted(run.shape for run in servable.runs[1:]) == [(1, 2), (1, 3)]
    np.testing.assert_array_equal(results[2]["y"], rows(1, 1, 3) * 2 + 1)


def test_large_request_is_split_across_batches_and_joined_in_order() -> None:
    servable = FakeServable()
    session = BatchingSession(
        BatchingOptions(
            max_batch_size=10,
            enable_large_batch_splitting=True,
            max_execution_batch_size=4,
            num_batch_threads=2,
        )
    )
    try:
        (result,) = asyncio.run(run_all(session, servable, [rows(1, 10, 2)]))
    finally:
        session.stop()
    assert sorted(run.shape[0] for run in servable.runs) == [2, 4, 4]
    np.testing.assert_array_equal(result["y"], rows(1, 10, 2) * 2 + 1)


def test_oversized_request_is_invalid_argument_at_once() -> None:
    servable = FakeServable()
    session = BatchingSession(BatchingOptions(max_batch_size=4, num_batch_threads=1))
    try:
        (result,) = asyncio.run(run_all(session, servable, [rows(1, 5, 1)]))
    finally:
        session.stop()
    assert isinstance(result, ServingError) and result.code == Code.INVALID_ARGUMENT
    assert result.message == "Task size 5 is larger than maximum input batch size 4"
    assert servable.runs == []


def test_run_error_reaches_every_caller_of_the_batch() -> None:
    servable = FakeServable(error=Internal("Model run failed: boom"))
    session = BatchingSession(BatchingOptions(max_batch_size=8, num_batch_threads=1))
    try:
        results = asyncio.run(run_all(session, servable, [rows(1, 1, 1), rows(2, 2, 1)]))
    finally:
        session.stop()
    assert [(r.code, r.message) for r in results] == [(Code.INTERNAL, "Model run failed: boom")] * 2


def test_output_without_the_batch_rows_fails_the_batch_with_tf_message() -> None:
    servable = FakeServable(output_rows=1)
    session = BatchingSession(BatchingOptions(max_batch_size=8, num_batch_threads=1))
    try:
        (result,) = asyncio.run(run_all(session, servable, [rows(1, 3, 1)]))
    finally:
        session.stop()
    assert isinstance(result, ServingError) and result.code == Code.FAILED_PRECONDITION
    assert result.message == (
        "Batched output tensor's 0th dimension does not equal the sum of the 0th dimension "
        "sizes of the input tensors"
    )


def test_ragged_batch_dimension_is_invalid_argument() -> None:
    servable = FakeServable()
    session = BatchingSession(BatchingOptions(num_batch_threads=1))
    run = PreparedRun(
        "serving_default",
        {"x": np.zeros((2, 1), F32), "z": np.zeros((3, 1), F32)},
        ("y",),
        ("y",),
    )
    try:
        with pytest.raises(ServingError) as info:
            session.submit(servable, run, lambda outputs, error: None)
    finally:
        session.stop()
    assert info.value.code == Code.INVALID_ARGUMENT
    assert info.value.message == ("Batching Run() input tensors must have equal 0th-dimension size")


@pytest.mark.parametrize(
    ("input_shape", "output_shape", "x", "accepted"),
    [
        ((-1, -1), (-1, -1), np.zeros((2, 1), F32), True),
        (None, None, np.zeros((2, 1), F32), True),  # unknown rank: dim 0 taken as the batch
        ((1, -1), (-1, -1), np.zeros((1, 1), F32), False),  # fixed batch dimension
        ((-1, -1), (), np.zeros((2, 1), F32), False),  # a scalar output cannot be split
        ((-1, -1), (-1, -1), np.zeros((0, 1), F32), False),  # nothing to batch
    ],
)
def test_which_runs_are_batched(
    input_shape: tuple[int, ...] | None,
    output_shape: tuple[int, ...] | None,
    x: np.ndarray,
    accepted: bool,
) -> None:
    session = BatchingSession(BatchingOptions(num_batch_threads=1))
    try:
        servable = FakeServable(input_shape, output_shape)
        assert session.accepts(servable, prepared(x)) is accepted
    finally:
        session.stop()


def test_a_caller_that_gives_up_leaves_its_batch_to_run_without_it() -> None:
    servable = FakeServable()
    session = BatchingSession(
        BatchingOptions(max_batch_size=8, batch_timeout_micros=3600 * 10**6, num_batch_threads=1)
    )

    async def scenario() -> None:
        waiting = asyncio.ensure_future(session.run(servable, prepared(rows(1, 2, 1))))
        await asyncio.sleep(0)  # submitted: queued until its (1 h) timeout
        waiting.cancel()  # a cancelled RPC: its handle is released, its task stays queued
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # Stopping runs what is queued; the answer for the departed caller is dropped.
        await asyncio.to_thread(session.stop)

    asyncio.run(scenario())
    assert [run.shape for run in servable.runs] == [(2, 1)]


def test_split_parts_padded_in_different_batches_are_joined() -> None:
    # A request split across two batches whose other members differ in width: its parts
    # come back padded differently and are padded alike (first element) before joining.
    servable = FakeServable()
    session = BatchingSession(
        BatchingOptions(
            max_batch_size=12,
            max_enqueued_batches=100,
            num_batch_threads=1,
            pad_variable_length_inputs=True,
            enable_large_batch_splitting=True,
            max_execution_batch_size=7,
        )
    )
    inputs = [rows(0, 2, 1), rows(1, 11, 1), rows(2, 1, 3)]
    try:
        results = asyncio.run(run_all(session, servable, inputs))
    finally:
        session.stop()
    assert [run.shape for run in servable.runs] == [(7, 1), (7, 3)]
    split = results[1]["y"]
    assert split.shape == (11, 3)
    np.testing.assert_array_equal(split[:, :1], rows(1, 11, 1) * 2 + 1)
    np.testing.assert_array_equal(split[:5, 1:], rows(1, 1, 1)[0, 0] * 2 + 1)  # first part
    np.testing.assert_array_equal(split[5:, 1:], rows(1, 6, 1)[5, 0] * 2 + 1)  # second part


def test_cheap_batches_run_on_the_event_loop_after_one_on_a_batch_thread() -> None:
    servable = FakeServable()
    session = BatchingSession(
        BatchingOptions(max_batch_size=8, num_batch_threads=1), placement=CheapUpTo(8)
    )
    inputs = [rows(i, 1, 2) for i in range(1, 4)]

    async def scenario() -> list[Any]:
        await session.run(servable, prepared(rows(0, 1, 2)))  # cost unknown: a batch thread
        return await run_all(session, servable, inputs)  # queued in one loop iteration

    try:
        results = asyncio.run(scenario())
    finally:
        session.stop()
    main = threading.current_thread().name
    assert servable.threads[0] != main
    assert servable.threads[1:] == [main]  # one batch, run inline on the loop
    np.testing.assert_array_equal(servable.runs[1], np.concatenate(inputs))
    for x, result in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(result["y"], x * 2 + 1)


def test_a_loop_batch_not_known_cheap_goes_to_the_threads_as_formed_with_its_queue() -> None:
    servable = FakeServable()
    session = BatchingSession(
        BatchingOptions(max_batch_size=8, num_batch_threads=1), placement=CheapUpTo(1)
    )
    three = [rows(i, 1, 2) for i in range(1, 4)]

    async def scenario() -> list[Any]:
        await session.run(servable, prepared(rows(0, 1, 2)))  # a thread; 1 row is cheap
        batch = await run_all(session, servable, three)  # 3 rows on the loop: not cheap
        await session.run(servable, prepared(rows(4, 1, 2)))  # the queue is on the threads
        await session.run(servable, prepared(rows(5, 1, 2)))  # cheap again: the loop
        return batch

    try:
        results = asyncio.run(scenario())
    finally:
        session.stop()
    main = threading.current_thread().name
    assert [run.shape[0] for run in servable.runs] == [1, 3, 1, 1]
    assert [name == main for name in servable.threads] == [False, False, False, True]
    for x, result in zip(three, results, strict=True):
        np.testing.assert_array_equal(result["y"], x * 2 + 1)


def hour_long_batches() -> tuple[FakeServable, BatchingSession]:
    """Batches of 2 rows that wait an hour to fill, all known cheap: on the event loop."""
    options = BatchingOptions(
        max_batch_size=2, batch_timeout_micros=3600 * 10**6, num_batch_threads=1
    )
    servable = FakeServable()
    return servable, BatchingSession(options, placement=CheapUpTo(2))


async def queue_for_an_hour(
    session: BatchingSession, servable: FakeServable
) -> asyncio.Future[Any]:
    """A 1-row run left waiting in the loop's queue, after a full batch taught its cost."""
    await session.run(servable, prepared(rows(0, 2, 1)))  # a full batch: no wait
    waiting = asyncio.ensure_future(session.run(servable, prepared(rows(1, 1, 1))))
    await asyncio.sleep(0)  # queued on the loop, for an hour
    assert not waiting.done()
    return waiting


def test_stop_runs_what_waits_in_the_loop_queues_without_its_timeout() -> None:
    servable, session = hour_long_batches()

    async def scenario() -> Any:
        waiting = await queue_for_an_hour(session, servable)
        await asyncio.wait_for(asyncio.to_thread(session.stop), WAIT_SECONDS)
        return await asyncio.wait_for(waiting, WAIT_SECONDS)

    result = asyncio.run(scenario())
    np.testing.assert_array_equal(result["y"], rows(1, 1, 1) * 2 + 1)
    assert servable.threads[1] == threading.current_thread().name


def test_stop_runs_the_loop_queues_of_a_loop_that_is_not_running() -> None:
    servable, session = hour_long_batches()
    loop = asyncio.new_event_loop()
    try:
        waiting = loop.run_until_complete(queue_for_an_hour(session, servable))
        session.stop(WAIT_SECONDS)  # the loop is open but stopped: flushed from here
        result = loop.run_until_complete(asyncio.wait_for(waiting, WAIT_SECONDS))
    finally:
        loop.close()
    np.testing.assert_array_equal(result["y"], rows(1, 1, 1) * 2 + 1)
