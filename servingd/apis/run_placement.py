"""Where a model run happens: inline on the event loop, or on the request thread pool.

Design decision 5 sends runs to a thread pool so that a long run never blocks the loop, and
asks to measure whether the hand-off costs more than a cheap model's run. It does: handing
a run to a thread and its result back (a futex wake-up of the worker, the GIL passed twice,
a self-pipe write to wake the loop) cost 0.3-0.5 ms per request on the 2-core bench
machine, where `tiny` runs in ~20 µs and `mlp` in ~150 µs; running those inline made
servingd 1.6-2x faster (bench/README.md has the figures). A model of several milliseconds
still belongs on the pool: inline, it would hold up every other request for its whole run.

So the choice is per run, from what runs of the same kind have cost: each (servable,
signature, fetched outputs, batch size rounded to a power of two) keeps a moving average of
the CPU time of its runs, and a run goes inline when that average is below the threshold
(`--inline_run_threshold_micros`; 0 sends every run to the pool). A kind never seen before
runs on the pool first, so a first run of unknown cost never blocks the loop. Inline runs are
timed too, so a kind that becomes slower (contention, larger inputs) moves back to the pool.

The run's *thread* CPU time is used, not its wall time: a pool run's wall time also counts
the wait for the GIL after onnxruntime returns, which grows with load and says nothing of
the run (onnxruntime's own pool threads spin while the calling thread waits for them, so
the caller's CPU time still covers a parallel run's span).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from time import thread_time
from typing import Any, TypeVar

from servingd.servables.onnx.onnx_servable import PreparedRun

R = TypeVar("R")

DEFAULT_INLINE_RUN_THRESHOLD_MICROS = 500
_WEIGHT = 0.2  # of the newest run in the moving average: ~5 runs to follow a change


def run_kind(signature_name: str, output_names: tuple[str, ...], batch_size: int) -> Hashable:
    """What runs are averaged together: same signature, same fetches, similar batch size."""
    return (signature_name, output_names, batch_size.bit_length())


def _kind(prepared: PreparedRun) -> Hashable:
    return run_kind(prepared.signature_name, prepared.output_names, prepared.batch_size)


class RunPlacement:
    """Thread-safe: the averages are floats in dicts, written whole (a lost update between
    two threads only delays the average by one run)."""

    def __init__(self, inline_threshold_micros: int = DEFAULT_INLINE_RUN_THRESHOLD_MICROS) -> None:
        self._threshold = inline_threshold_micros / 1e6
        # Per servable object, so an unloaded version's figures go with it.
        self._costs: weakref.WeakKeyDictionary[Any, dict[Hashable, float]] = (
            weakref.WeakKeyDictionary()
        )

    def place(
        self, servable: Any, prepared: PreparedRun, run: Callable[..., R]
    ) -> tuple[bool, Callable[..., R]]:
        """(whether to call it on the calling event-loop thread, `run` timed): the timed
        `run` records its CPU time under this run's kind wherever it is called."""
        if self._threshold <= 0:
            return False, run
        kind = _kind(prepared)

        def timed_run(*args: Any) -> R:
            start = thread_time()
            try:
                return run(*args)
            finally:
                self.record(servable, kind, thread_time() - start)

        return self._cheap(servable, kind), timed_run

    def is_cheap(self, servable: Any, prepared: PreparedRun) -> bool:
        """Whether a run of this kind would go inline now (what `place` decides)."""
        return self._threshold > 0 and self._cheap(servable, _kind(prepared))

    def _cheap(self, servable: Any, kind: Hashable) -> bool:
        costs = self._costs.get(servable)
        return self.runs_inline(None if costs is None else costs.get(kind))

    def runs_inline(self, cost: float | None) -> bool:
        """The rule: a kind whose average (None: never run) is below the threshold."""
        return cost is not None and cost < self._threshold

    def costs_of(self, servable: Any) -> dict[Hashable, float]:
        """The servable's averages by kind, in seconds, live: for a caller that decides
        inline runs itself (`runs_inline`), times them and reports them with `record`."""
        costs = self._costs.get(servable)
        if costs is None:
            costs = self._costs.setdefault(servable, {})
        return costs

    def record(self, servable: Any, kind: Hashable, seconds: float) -> None:
        """One run's thread CPU time, in seconds."""
        costs = self.costs_of(servable)
        previous = costs.get(kind)
        costs[kind] = seconds if previous is None else previous + _WEIGHT * (seconds - previous)

    def estimate_micros(self, servable: Any, prepared: PreparedRun) -> float | None:
        """The moving average for this run's kind, in µs (None before its first run)."""
        cost = self._costs.get(servable, {}).get(_kind(prepared))
        return None if cost is None else cost * 1e6
