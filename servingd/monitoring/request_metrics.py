"""One request's metrics, written once for gRPC and REST: TF's request_count and
request_latency and runtime_latency, plus servingd's per-stage latencies.

The API layer opens a `RequestScope` around each call (`metered` for gRPC servicer methods,
`request_scope` for the REST handler). While it is open it is the *current* scope (a
ContextVar, so each asyncio task sees its own), and Predictor reports to it without taking a
parameter: the served version (`current_scope().version`) and the model run (`run_timing()`,
filled in by the thread that runs it). With metrics off there is no scope and both are no-ops.

On exit the scope records, as TF's handlers do: request_count{model_name, status} for every
call (status = the canonical code name of the error, or "OK"); for a successful one,
request_latency{model_name, API, entrypoint}, runtime_latency and the stages. The stages come
from the run's checkpoints, so they add up to the request's latency:

  decode       call start -> run handed off (parse, resolve the version, validate)
  queue_wait   hand-off -> run starts on a thread, plus run end -> the caller resumes
  batch_wait   the same, for a run that went through the batching queue
  model_run    the run itself
  encode       the caller resumes -> call end (build the response)

Cost matters here (bench/metrics_cost.py): a successful request appends one tuple of
timings to its RequestCells, and the tuples are folded into the histograms in batches with
numpy, at most FOLD_EVERY requests late and always before anything reads the metrics.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from itertools import chain
from time import perf_counter_ns
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from servingd.core.status import Code, ServingError
from servingd.monitoring.collection_registry import SamplerCell
from servingd.monitoring.metrics import (
    DECODE,
    ENCODE,
    LATENCY_BUCKETS,
    MODEL_RUN,
    QUEUE_WAIT,
    RUNTIME,
    STAGE_NAMES,
    RequestKey,
    ServingMetrics,
)

R = TypeVar("R")
T = TypeVar("T")
Handler = Callable[[Any, Any, Any], Awaitable[R]]

FOLD_EVERY = 1024  # buffered requests per kind of request before they are folded in
_LIMITS = np.array(LATENCY_BUCKETS)
_CURRENT: ContextVar[RequestScope | None] = ContextVar("servingd_request_scope", default=None)

# (latency, runtime, decode, wait, model_run, encode), in ns; 0 = none. `wait` is the
# RequestKey's wait stage (queue_wait or batch_wait).
Timings = tuple[int, int, int, int, int, int]
_COLUMNS = 6


class RunTiming:
    """When a model run was handed off (`queued_ns`, set on creation), started and finished.
    The thread that runs it fills in the last two, through `call` or (a batch thread)
    `mark_started` / `mark_finished`; the coroutine that awaited the run then `record`s it,
    and may ask how long the run waited (`wait_ns`). The current RequestScope is its own
    RunTiming, one object per request; Predictor.predict makes one when there is no scope,
    for the V2 statistics' queue time."""

    __slots__ = ("finished_ns", "queued_ns", "returned_ns", "started_ns")

    def __init__(self) -> None:
        self.queued_ns = perf_counter_ns()
        self.started_ns = self.finished_ns = self.returned_ns = 0

    def mark_started(self) -> None:
        # A request split across batches started with its first part.
        if not self.started_ns:
            self.started_ns = perf_counter_ns()

    def mark_finished(self) -> None:
        self.finished_ns = perf_counter_ns()

    def call(self, function: Callable[..., T], *args: Any) -> T:
        self.started_ns = perf_counter_ns()
        try:
            return function(*args)
        finally:
            self.finished_ns = perf_counter_ns()

    def record(self, api: str, wait_stage: int) -> None:
        """The model run finished and its caller resumed; `wait_stage` is QUEUE_WAIT or
        BATCH_WAIT, where it waited."""
        self.returned_ns = perf_counter_ns()

    def wait_ns(self) -> int:
        """Hand-off -> run start, plus run end -> the caller resumed; 0 before a run."""
        if not self.started_ns:
            return 0
        return self.started_ns - self.queued_ns + self.returned_ns - self.finished_ns


class RequestScope(RunTiming):
    """Context manager for one API call, and the RunTiming of its model run; see the module
    docstring. Belongs to the coroutine that opened it; only the run's thread writes to it
    besides (started_ns, finished_ns), before the coroutine resumes."""

    __slots__ = (
        "_cancelled_status",
        "_metrics",
        "_start_ns",
        "_token",
        "_wait_stage",
        "api",
        "entrypoint",
        "examples",
        "model_name",
        "run_api",
        "version",
    )

    def __init__(
        self,
        metrics: ServingMetrics,
        model_name: str,
        api: str,
        entrypoint: str,
        cancelled_status: Code = Code.CANCELLED,
    ) -> None:
        self._metrics = metrics
        self.model_name = model_name
        self.api = api
        self.entrypoint = entrypoint
        # What a cancelled call counts as: REST cancels only on --rest_api_timeout_in_ms.
        self._cancelled_status = cancelled_status
        self.version: int | None = None
        self.examples = 0
        self.run_api = ""  # TF's API name of the model run, once there was one
        self._wait_stage = QUEUE_WAIT
        self.queued_ns = self.started_ns = self.finished_ns = self.returned_ns = 0

    def __enter__(self) -> RequestScope:
        self._start_ns = perf_counter_ns()
        self._token = _CURRENT.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        end_ns = perf_counter_ns()
        _CURRENT.reset(self._token)
        if exc is not None:
            if isinstance(exc, ServingError):
                status = exc.code.name
            elif isinstance(exc, asyncio.CancelledError):
                status = self._cancelled_status.name
            else:
                status = Code.INTERNAL.name  # what apis/errors.py answers for a bug
            self._metrics.request_count.get_cell(self.model_name, status).increment_by(1)
            return
        # A success: its timings go to its kind's buffer (one append; see RequestCells).
        start, queued = self._start_ns, self.queued_ns
        if not self.run_api:
            timings: Timings = (end_ns - start, 0, 0, 0, 0, 0)
        else:
            returned = self.returned_ns
            if self.version is None or not self.started_ns:
                timings = (end_ns - start, returned - queued, 0, 0, 0, 0)
            else:
                timings = (
                    end_ns - start,
                    returned - queued,
                    queued - start,
                    self.wait_ns(),
                    self.finished_ns - self.started_ns,
                    end_ns - returned,
                )
        metrics = self._metrics
        key = (
            self.model_name,
            self.api,
            self.entrypoint,
            self.version,
            self.run_api,
            self._wait_stage,
        )
        cells = metrics.request_buffers.get(key)
        if cells is None:
            cells = metrics.request_buffers.setdefault(key, RequestCells(metrics, key))
        pending = cells.pending
        pending.append(timings)  # atomic: no lock on the request path
        if len(pending) >= FOLD_EVERY:
            cells.fold()
        if self.examples:
            metrics.request_example_counts.get_cell(self.model_name).add(self.examples)
            metrics.request_example_count_total.get_cell(self.model_name).increment_by(
                self.examples
            )

    def record(self, api: str, wait_stage: int) -> None:
        super().record(api, wait_stage)
        self.run_api, self._wait_stage = api, wait_stage


class RequestCells:
    """The cells one kind of successful request (a RequestKey) updates, and its buffered
    timings. Appending to `pending` (atomic for a deque, so the request path takes no lock)
    and `fold` (one at a time) are safe from any thread; each tuple is folded once."""

    def __init__(self, metrics: ServingMetrics, key: RequestKey) -> None:
        model, api, entrypoint, version, run_api, wait_stage = key
        self._lock = metrics.request_lock  # the lock of every cell below
        self._ok = metrics.request_count.get_cell(model, "OK")
        # One cell per Timings column; a column's cell is made when it first has a value,
        # so a stage that never happens (batch_wait without batching) exports nothing.
        self._cell_makers: list[Callable[[], SamplerCell]] = [
            functools.partial(metrics.request_latency.get_cell, model, api, entrypoint),
            functools.partial(metrics.runtime_latency.get_cell, model, run_api, RUNTIME),
            *(
                functools.partial(
                    metrics.request_stage_latency.get_cell, model, str(version), STAGE_NAMES[s]
                )
                for s in (DECODE, wait_stage, MODEL_RUN, ENCODE)
            ),
        ]
        self._cells: list[SamplerCell | None] = [None] * len(self._cell_makers)
        self.pending: deque[tuple[int, ...]] = deque()  # appended to by RequestScope
        self._fold_lock = threading.Lock()

    def fold(self) -> None:
        with self._fold_lock:
            self._fold_locked()

    def _fold_locked(self) -> None:
        pending = self.pending
        count = len(pending)  # what is appended meanwhile waits for the next fold
        if not count:
            return
        popleft = pending.popleft
        flat = chain.from_iterable([popleft() for _ in range(count)])
        nanoseconds = np.fromiter(flat, np.int64, count * _COLUMNS).reshape(count, _COLUMNS)
        microseconds = nanoseconds / 1000
        width = len(_LIMITS) + 1
        # One bincount for every column: column c's buckets are at [c * width, (c+1) * width).
        buckets = np.searchsorted(_LIMITS, microseconds, side="right")
        buckets += np.arange(nanoseconds.shape[1]) * width
        counts = np.bincount(buckets[nanoseconds > 0], minlength=width * nanoseconds.shape[1])
        by_column = counts.reshape(nanoseconds.shape[1], width).tolist()
        totals = microseconds.sum(axis=0).tolist()
        updates = []
        for index, column_counts in enumerate(by_column):
            if any(column_counts):
                cell = self._cells[index] or self._cell_makers[index]()
                self._cells[index] = cell
                updates.append((cell, column_counts, totals[index]))
        with self._lock:
            self._ok.value += count
            for cell, column_counts, total in updates:
                cell.counts = [a + b for a, b in zip(cell.counts, column_counts, strict=True)]
                cell.sum += total


def current_scope() -> RequestScope | None:
    return _CURRENT.get()


class _NoScope:
    """What `request_scope` gives when nothing is measured."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


_NO_SCOPE = _NoScope()


def request_scope(
    metrics: ServingMetrics | None,
    model_name: str,
    api: str,
    entrypoint: str,
    cancelled_status: Code = Code.CANCELLED,
) -> RequestScope | _NoScope:
    """`with request_scope(...) as scope:` scope is None when metrics are off."""
    if metrics is None:
        return _NO_SCOPE
    return RequestScope(metrics, model_name, api, entrypoint, cancelled_status)


def metered(api: str, entrypoint: str = "GRPC") -> Callable[[Handler[R]], Handler[R]]:
    """Decorates a servicer method `(self, request, context)` whose request has a
    `model_spec`: a RequestScope around it when `self.metrics` is set. Put it inside the
    error decorator, so it sees the error the handler raised rather than the abort."""

    def decorate(handler: Handler[R]) -> Handler[R]:
        @functools.wraps(handler)
        async def wrapper(self: Any, request: Any, context: Any) -> R:
            metrics: ServingMetrics | None = self.metrics
            if metrics is None:
                return await handler(self, request, context)
            # TF counts under the name the request sent, "" when there was no ModelSpec.
            with RequestScope(metrics, request.model_spec.name, api, entrypoint):
                return await handler(self, request, context)

        return wrapper

    return decorate


def run_timing() -> RunTiming | None:
    """The RunTiming of the current request's model run (the scope itself, its hand-off time
    set now); None when nothing is measured."""
    scope = _CURRENT.get()
    if scope is not None:
        scope.queued_ns = perf_counter_ns()
    return scope
