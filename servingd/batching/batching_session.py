"""BatchingSession: merges validated runs of one version into batches, runs them once, splits
the outputs back (TF Serving's `batching/batching_session.cc`, for OnnxServable runs).

Runs are queued per (servable version, signature, fetched outputs) and, unless
`pad_variable_length_inputs` is set, per shape of the non-batch dimensions: TF fails a whole
batch when such shapes differ, while here they simply never share one. In a batch, inputs are
concatenated along dim 0 and padded up to the next allowed batch size with copies of the
last task's first row (TF's choice: a row the model is known to accept); with
`pad_variable_length_inputs`, each input is first padded to the largest shape in the batch with
its own first element. Every caller gets exactly its own rows of every output; padding rows are
never handed out. A run too large for a batch is split across batches when large-batch
splitting is on, and its parts are joined again before the caller is answered.

Where a batch runs: with a RunPlacement, a queue whose last batch was cheap by its rule is
kept on the event loop (loop_queues.py) and its batches run inline there, as cheap single
runs do; any other batch runs on the batch threads, where its cost is measured. A batch
formed on the loop whose kind is not known cheap goes to the threads as it is, and its
queue with it, until its batches are cheap again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Protocol, TypeVar

import numpy as np

from servingd.batching.batch_scheduler import QueueOptions, QueueSpec, SharedBatchScheduler
from servingd.batching.batching_parameters import BatchingOptions
from servingd.batching.loop_queues import LoopQueues
from servingd.core.status import FailedPrecondition, Internal, InvalidArgument, ServingError
from servingd.monitoring.metrics import ServingMetrics
from servingd.monitoring.request_metrics import RunTiming
from servingd.servables.onnx.onnx_servable import PreparedRun
from servingd.servables.onnx.signature import Signature, TensorSpec

Outputs = dict[str, np.ndarray]
R = TypeVar("R")
# Called once per run, from a batch thread: (outputs, None) or (None, error).
Done = Callable[[Outputs | None, ServingError | None], None]
_Answer = tuple[asyncio.Future[Outputs], Outputs | None, ServingError | None]

# While a batch thread answers a batch, the answers for awaiting coroutines collect here and
# reach each event loop in one call_soon_threadsafe: one wake-up of the loop per batch
# instead of one per request (each is a write to the loop's self-pipe and a trip round it).
_BATCH_ANSWERS = threading.local()


class BatchableServable(Protocol):
    """What a batch needs of a servable (OnnxServable; fakes in tests)."""

    def signature(self, name: str) -> Signature: ...

    def run(self, prepared: PreparedRun) -> Outputs: ...


class RunPlace(Protocol):
    """Where runs go (apis/run_placement.RunPlacement): `place` gives whether a run of this
    kind goes inline, and the run timed so that its cost is learned; `is_cheap` the first."""

    def place(
        self, servable: Any, prepared: PreparedRun, run: Callable[[PreparedRun], Outputs]
    ) -> tuple[bool, Callable[[PreparedRun], Outputs]]: ...

    def is_cheap(self, servable: Any, prepared: PreparedRun) -> bool: ...


class _Request:
    """One caller's run; answered once, when every part of it has run (or one failed)."""

    __slots__ = (
        "_done",
        "_lock",
        "_parts",
        "_remaining",
        "enqueued_ns",
        "prepared",
        "size",
        "timing",
    )

    def __init__(
        self, prepared: PreparedRun, size: int, done: Done, timing: RunTiming | None = None
    ) -> None:
        self.prepared = prepared
        self.size = size
        self.timing = timing
        self.enqueued_ns = time.perf_counter_ns()
        self._done: Done | None = done
        self._lock = threading.Lock()
        self._parts: list[Outputs | None] = [None]
        self._remaining = 1

    def expect_parts(self, count: int) -> None:
        # Called while the scheduler lock is held during `schedule`, before any part can run.
        self._parts = [None] * count
        self._remaining = count

    def part_done(self, index: int, outputs: Outputs | None, error: ServingError | None) -> None:
        with self._lock:
            done = self._done
            if done is None:
                return  # already answered with an earlier part's error
            if error is None:
                self._parts[index] = outputs
                self._remaining -= 1
                if self._remaining:
                    return
            self._done = None
        if error is None:
            try:
                outputs = _join_parts(self._parts)
            except Exception as exc:  # never leave a caller without an answer
                error = Internal(f"Joining the parts of a split request failed: {exc}")
        if error is not None:
            done(None, error)
        else:
            done(outputs, None)


def _join_parts(parts: list[Outputs | None]) -> Outputs:
    complete = [p for p in parts if p is not None]  # all of them, once every part succeeded
    if len(complete) == 1:
        return complete[0]
    joined = {}
    for alias in complete[0]:
        pieces = [p[alias] for p in complete]
        if len({piece.shape[1:] for piece in pieces}) > 1:
            # Parts padded in different batches (pad_variable_length_inputs): pad them alike.
            pieces = _pad_to_common_shape(pieces)
        joined[alias] = np.concatenate(pieces, axis=0)
    return joined


class _RunTask:
    """Rows [start, start + size) of one request: all of it, or one part of a split."""

    __slots__ = ("index", "request", "size", "start")

    def __init__(self, request: _Request, index: int, start: int, size: int) -> None:
        self.request = request
        self.index = index
        self.start = start
        self.size = size

    def feed(self, name: str) -> np.ndarray:
        array = self.request.prepared.feeds[name]
        if self.start == 0 and self.size == self.request.size:
            return array
        return array[self.start : self.start + self.size]


def _split_task(task: _RunTask, first_size: int, max_size: int) -> list[_RunTask]:
    sizes = [min(first_size, task.size)] if first_size > 0 else []
    remaining = task.size - sum(sizes)
    while remaining > 0:
        sizes.append(min(max_size, remaining))
        remaining -= sizes[-1]
    task.request.expect_parts(len(sizes))
    parts, start = [], task.start
    for index, size in enumerate(sizes):
        parts.append(_RunTask(task.request, index, start, size))
        start += size
    return parts


def _has_batch_dim(spec: TensorSpec) -> bool:
    # Unknown rank is taken as batchable, as TF assumes dim 0 is the batch of every tensor.
    return spec.shape is None or (len(spec.shape) >= 1 and spec.shape[0] == -1)


class BatchingSession:
    """Thread-safe. `run` is awaited on the event loop; the batch runs on a batch thread, or
    inline on that loop when its queue's batches are cheap (with a `placement`)."""

    def __init__(
        self,
        options: BatchingOptions,
        metrics: ServingMetrics | None = None,
        placement: RunPlace | None = None,
    ) -> None:
        self.options = options
        self._metrics = metrics  # TF's batching_session metrics, when monitoring is on
        self._placement = placement  # None: every batch runs on the batch threads
        self._loop_queues: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, LoopQueues[_RunTask]
        ] = weakref.WeakKeyDictionary()
        # Per servable (weakly: an unloaded version's entries go with it), per queue key
        # without the servable: whether that queue's last batch was cheap (runs on the loop).
        self._cheap_queues: weakref.WeakKeyDictionary[Any, dict[Hashable, bool]] = (
            weakref.WeakKeyDictionary()
        )
        self._queue_options = QueueOptions(
            input_batch_size_limit=options.max_batch_size,
            max_execution_batch_size=options.execution_batch_size_limit,
            batch_timeout_micros=options.batch_timeout_micros,
            max_enqueued_batches=options.max_enqueued_batches,
            enable_large_batch_splitting=options.enable_large_batch_splitting,
        )
        self._scheduler: SharedBatchScheduler[_RunTask] = SharedBatchScheduler(
            options.num_batch_threads, options.thread_pool_name
        )

    @property
    def scheduler(self) -> SharedBatchScheduler[Any]:
        return self._scheduler

    def accepts(self, servable: BatchableServable, prepared: PreparedRun) -> bool:
        """Whether this run can share a batch. Others (no inputs, no rows, or a signature
        whose tensors have no free batch dimension) run on their own, as TF bypasses the
        batcher for runs that match no batching signature."""
        if prepared.batch_size <= 0:
            return False
        return self.accepts_signature(servable, prepared.signature_name, prepared.output_aliases)

    def accepts_signature(
        self, servable: BatchableServable, signature_name: str, output_aliases: tuple[str, ...]
    ) -> bool:
        """`accepts` for every run of this signature and fetch that has rows."""
        signature = servable.signature(signature_name)
        return all(_has_batch_dim(spec) for spec in signature.inputs.values()) and all(
            _has_batch_dim(signature.outputs[alias]) for alias in output_aliases
        )

    def submit(
        self,
        servable: BatchableServable,
        prepared: PreparedRun,
        done: Done,
        timing: RunTiming | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Queues the run; `done` is called later, from a batch thread (or from `loop`, the
        caller's running event loop, if the batch runs there). Raises InvalidArgument
        (ragged batch dimension, over max_batch_size) or Unavailable (queue full) at once.
        `timing`, if given, learns when the run's batch started and finished."""
        size = _batch_size(prepared.feeds)
        request = _Request(prepared, size, done, timing)
        if self._metrics is not None:
            self._metrics.record_batch_input(size)
        key = self._queue_key(servable, prepared)
        spec: QueueSpec[_RunTask] = QueueSpec(
            self._queue_options, functools.partial(self._process_batch, key), _split_task
        )
        task = _RunTask(request, 0, 0, size)
        cheap = self._cheap_queues.get(servable)
        if loop is not None and cheap is not None and cheap.get(key[1:], False):
            self._loop_queues_of(loop).schedule(key, spec, task)
        else:
            self._scheduler.schedule(key, spec, task)

    async def run(
        self, servable: BatchableServable, prepared: PreparedRun, timing: RunTiming | None = None
    ) -> Outputs:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outputs] = loop.create_future()

        def done(outputs: Outputs | None, error: ServingError | None) -> None:
            answers: dict[Any, list[_Answer]] | None = getattr(_BATCH_ANSWERS, "by_loop", None)
            if answers is not None:
                answers.setdefault(loop, []).append((future, outputs, error))
                return
            # A closed loop raises RuntimeError: nobody is waiting for this answer any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future, outputs, error)

        self.submit(servable, prepared, done, timing, loop)
        return await future

    def stop(self, timeout_seconds: float = 30.0) -> None:
        """Runs what is queued (without waiting for timeouts), then ends the batch threads.
        Called off a running event loop, it has that loop flush its queues and waits."""
        deadline = time.monotonic() + timeout_seconds
        for loop, queues in list(self._loop_queues.items()):
            if loop.is_closed():
                continue
            if not loop.is_running() or _running_loop() is loop:
                queues.flush(closing=True)  # nothing else is using its queues now
                continue
            flushed = concurrent.futures.Future[None]()

            def flush(queues: LoopQueues[_RunTask] = queues, flushed: Any = flushed) -> None:
                try:
                    queues.flush(closing=True)
                finally:
                    flushed.set_result(None)

            with contextlib.suppress(RuntimeError, concurrent.futures.TimeoutError):
                loop.call_soon_threadsafe(flush)
                flushed.result(max(0.0, deadline - time.monotonic()))
        self._scheduler.stop(max(0.0, deadline - time.monotonic()))

    def _loop_queues_of(self, loop: asyncio.AbstractEventLoop) -> LoopQueues[_RunTask]:
        queues = self._loop_queues.get(loop)
        if queues is None:
            queues = LoopQueues(loop, self._loop_batch)
            self._loop_queues[loop] = queues
        return queues

    def _loop_batch(
        self, key: tuple[Any, ...], spec: QueueSpec[_RunTask], tasks: list[_RunTask]
    ) -> None:
        """A batch formed on the event loop: it runs here if its kind is known cheap, else
        on the batch threads as formed, and its queue goes back to them."""
        if self._process_batch(key, tasks, inline_only=True):
            return
        self._cheap_queues.setdefault(key[0], {})[key[1:]] = False
        try:
            self._scheduler.schedule_batch(key, spec, tasks)
        except ServingError as exc:  # shutting down: every caller still gets an answer
            self._process_answers(functools.partial(_fail_all, tasks, exc))

    def _queue_key(self, servable: BatchableServable, prepared: PreparedRun) -> tuple[Any, ...]:
        feeds = prepared.feeds
        # Padding makes any non-batch shapes mergeable (of one rank); otherwise they must match.
        pad = self.options.pad_variable_length_inputs
        shapes = tuple((name, a.ndim if pad else a.shape[1:]) for name, a in feeds.items())
        # The servable object stands for its version: a reloaded version is a new object.
        return (servable, prepared.signature_name, prepared.output_names, shapes)

    def _process_batch(
        self, key: tuple[Any, ...], tasks: list[_RunTask], inline_only: bool = False
    ) -> bool:
        """Runs a batch of the queue `key` and answers its tasks; with `inline_only` (on the
        event loop), only if its kind is known cheap: False when it did not run (nobody was
        answered)."""
        return self._process_answers(lambda: self._run_batch(key, tasks, inline_only))

    def _process_answers(self, answer: Callable[[], R]) -> R:
        """Calls `answer` (which answers tasks) and delivers its answers to each waiting
        event loop in one go: directly on the loop that is running here, else with one
        call_soon_threadsafe per loop. Returns what `answer` returned."""
        answers: dict[Any, list[_Answer]] = {}
        _BATCH_ANSWERS.by_loop = answers
        try:
            result = answer()
        finally:
            _BATCH_ANSWERS.by_loop = None
            running = _running_loop()
            for loop, batch in answers.items():
                if loop is running:
                    _resolve_all(batch)
                    continue
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                    loop.call_soon_threadsafe(_resolve_all, batch)
        return result

    def _run_batch(
        self, key: tuple[Any, ...], tasks: list[_RunTask], inline_only: bool = False
    ) -> bool:
        dequeued_ns = time.perf_counter_ns()
        servable: BatchableServable = key[0]  # the servable object stands for its version
        try:
            feeds, padded_size = self._merge_inputs(tasks)
            first = tasks[0].request.prepared
            prepared = PreparedRun(
                first.signature_name, feeds, first.output_aliases, first.output_names
            )
            run: Callable[[PreparedRun], Outputs] = servable.run
            if self._placement is not None:
                inline, run = self._placement.place(servable, prepared, run)
                if inline_only and not inline:
                    return False
            for task in tasks:
                if task.request.timing is not None:
                    task.request.timing.mark_started()
            if self._metrics is not None:
                self._metrics.record_batch(
                    self.options.thread_pool_name,
                    [(dequeued_ns - task.request.enqueued_ns) / 1000 for task in tasks],
                    sum(task.size for task in tasks),
                    padded_size,
                )
            outputs = run(prepared)
            if self._placement is not None:  # where this queue's next batches run
                cheap = self._placement.is_cheap(servable, prepared)
                self._cheap_queues.setdefault(servable, {})[key[1:]] = cheap
            for task in tasks:
                if task.request.timing is not None:
                    task.request.timing.mark_finished()
            for array in outputs.values():
                if array.ndim == 0:
                    raise FailedPrecondition("Batched output tensor has 0 dimensions")
                if array.shape[0] != padded_size:
                    raise FailedPrecondition(
                        "Batched output tensor's 0th dimension does not equal the sum of the "
                        "0th dimension sizes of the input tensors"
                    )
            offset = 0
            for task in tasks:
                rows = slice(offset, offset + task.size)
                task.request.part_done(task.index, {a: v[rows] for a, v in outputs.items()}, None)
                offset += task.size
        except Exception as exc:
            # Whatever failed, every caller still waiting on this batch gets an answer.
            error = exc if isinstance(exc, ServingError) else Internal(f"Batch run failed: {exc}")
            _fail_all(tasks, error)
        return True

    def _merge_inputs(self, tasks: list[_RunTask]) -> tuple[dict[str, np.ndarray], int]:
        total = sum(task.size for task in tasks)
        padded_size = self.options.padded_batch_size(total)
        merged = {}
        for name in tasks[0].request.prepared.feeds:
            arrays = [task.feed(name) for task in tasks]
            if self.options.pad_variable_length_inputs:
                arrays = _pad_to_common_shape(arrays)
            if padded_size > total:
                arrays.append(np.repeat(arrays[-1][:1], padded_size - total, axis=0))
            merged[name] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        return merged, padded_size


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # called from a thread with no running loop: a batch thread
        return None


def _fail_all(tasks: list[_RunTask], error: ServingError) -> None:
    for task in tasks:
        task.request.part_done(task.index, None, error)


def _batch_size(feeds: Mapping[str, np.ndarray]) -> int:
    """TF's ComputeTensorBatchSize: every input's 0th dimension, which must agree."""
    sizes = set()
    for array in feeds.values():
        if array.ndim == 0:
            raise InvalidArgument("Batching Run() input tensors must have at least one dimension")
        sizes.add(int(array.shape[0]))
    if len(sizes) != 1:
        raise InvalidArgument("Batching Run() input tensors must have equal 0th-dimension size")
    return sizes.pop()


def _pad_to_common_shape(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """TF's AddPadding: every non-batch dimension up to the largest in the batch, filled with
    the tensor's first element (an empty tensor has none: it gets zeros or empty strings)."""
    target = tuple(max(sizes) for sizes in zip(*(a.shape[1:] for a in arrays), strict=True))
    result = []
    for array in arrays:
        if array.shape[1:] == target:
            result.append(array)
            continue
        if array.size:
            fill: Any = array.flat[0]
        else:
            fill = "" if array.dtype == np.dtype(object) else 0
        padded = np.full((array.shape[0], *target), fill, dtype=array.dtype)
        padded[tuple(slice(0, size) for size in array.shape)] = array
        result.append(padded)
    return result


def _resolve(
    future: asyncio.Future[Outputs], outputs: Outputs | None, error: ServingError | None
) -> None:
    if future.done():  # the caller gave up (cancelled RPC); its rows are simply dropped
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert outputs is not None
        future.set_result(outputs)


def _resolve_all(answers: list[_Answer]) -> None:
    for future, outputs, error in answers:
        _resolve(future, outputs, error)
