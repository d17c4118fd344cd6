"""Admission control: a bounded number of requests in flight per model, and the drain at
shutdown.

TF Serving has no such bound: requests beyond what the threads can run queue without limit,
so an overloaded model answers everyone late (and a client's retries pile on). servingd
admits at most `--max_inflight_requests_per_model` inference requests per model name at a
time (Predict, Classify, Regress, MultiInference, and their REST forms) and refuses the rest
at once with UNAVAILABLE (HTTP 503), the code gRPC clients and load balancers retry on, as
TF Serving's batching queue answers when it is full.

A request counts from the moment it names its model until its answer is ready, including
time spent queued for a run thread or a batch. Metadata and status calls are not counted.
Counters exist only while a model has requests in flight, so requests naming unknown models
cannot grow the table.

At shutdown the server `close()`s admission, so new requests are refused with UNAVAILABLE
while the ports stay open, and `wait_until_idle()` for the admitted ones to finish.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from servingd.core.status import Unavailable

# Generous: well above what a few run threads can work through in a client's timeout, low
# enough that a flood is refused instead of holding every request's tensors in memory.
DEFAULT_MAX_INFLIGHT_REQUESTS_PER_MODEL = 1024


class AdmissionControl:
    """Counts requests in flight per model name. `limit <= 0` admits everything (the counts
    are still kept, for the drain at shutdown). Thread-safe: REST conversion threads and the
    event loop may both admit, and the server waits for the drain on another thread."""

    def __init__(self, limit: int = DEFAULT_MAX_INFLIGHT_REQUESTS_PER_MODEL) -> None:
        self.limit = limit
        # A plain Lock on the request path (a Condition's methods are Python code); the
        # Condition on the same lock is only for the drain at shutdown.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # All three guarded by _lock.
        self._in_flight: dict[str, int] = {}  # no zero entries
        self._closed: str | None = None  # why new requests are refused
        self._waiters = 0  # threads in wait_until_idle: only they need a notify

    @contextmanager
    def admit(self, model_name: str) -> Iterator[None]:
        """Holds one of `model_name`'s slots for the `with` block, or raises Unavailable."""
        refusal = self.try_acquire(model_name)
        if refusal:
            raise Unavailable(refusal)
        try:
            yield
        finally:
            self.release(model_name)

    def try_acquire(self, model_name: str) -> str:
        """Takes one of `model_name`'s slots ("") or says why not; a taken slot must be
        given back with `release`. `admit` for callers that cannot use a `with` block."""
        with self._lock:
            if self._closed is not None:
                return self._closed
            count = self._in_flight.get(model_name, 0)
            if 0 < self.limit <= count:
                return (
                    f"Too many requests in flight for model {model_name}: the limit is "
                    f"{self.limit} (--max_inflight_requests_per_model); retry later"
                )
            self._in_flight[model_name] = count + 1
            return ""

    def release(self, model_name: str) -> None:
        with self._lock:
            remaining = self._in_flight[model_name] - 1
            if remaining:
                self._in_flight[model_name] = remaining
            else:
                del self._in_flight[model_name]
                if self._waiters:
                    self._changed.notify_all()

    def in_flight(self, model_name: str | None = None) -> int:
        """Requests in flight for one model, or for all of them."""
        with self._changed:
            if model_name is not None:
                return self._in_flight.get(model_name, 0)
            return sum(self._in_flight.values())

    def close(self, reason: str) -> None:
        """From now on every request is refused with UNAVAILABLE: `reason`."""
        with self._changed:
            self._closed = reason

    def wait_until_idle(self, timeout_seconds: float) -> bool:
        """Blocks until no request is in flight (True) or `timeout_seconds` passed (False)."""
        deadline = time.monotonic() + timeout_seconds
        with self._changed:
            self._waiters += 1
            try:
                while self._in_flight:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._changed.wait(remaining)
                return True
            finally:
                self._waiters -= 1
