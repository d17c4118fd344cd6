"""Triton's statistics extension: cumulative inference statistics per model version, counted on
the V2 inference path (gRPC ModelInfer and REST infer) and answered by ModelStatistics and
`GET /v2/models[/{m}[/versions/{v}]]/stats`.

What a request adds (Triton's meanings, as far as the V2 layer can see them):

  success         one per answered request; ns from the call's start to its response built
  compute_input   decoding the request's tensors
  compute_infer   Predictor.predict but its queue time: resolve, validate, run
  compute_output  building the response
  queue           one per request: the run's wait for a batch (--enable_batching) or a
                  thread before it starts, and for the event loop once it ended (~0 for a
                  run inline on the loop)
  fail            one per request that failed once its model version was known
  inference_count the request's batch (its first dimension) for a model whose ModelConfig
                  has max_batch_size > 0, else 1; execution_count one per request, also when
                  --enable_batching ran it in a batch with others
  batch_stats     compute_* again, per such batch size

TF Serving's Predict, Classify and Regress are not counted (they keep their Prometheus
metrics), and nothing here runs unless a V2 request does. Counts are per process: each
`--workers` process answers with its own. They survive a version's unload and reload.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

import numpy as np

from servingd.apis.predictor import ModelRef, Predictor
from servingd.apis.v2.inference import available_versions, check_model_ready, model_ref
from servingd.apis.v2.model_config import max_batch_size
from servingd.batching import BatchingOptions
from servingd.core.status import ServingError
from servingd.protos.inference import grpc_service_pb2 as pb


@dataclass(slots=True)
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += ns


@dataclass(slots=True)
class BatchStats:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class StatsAggregator:
    """One model version's statistics (Triton's InferenceStatsAggregator). Guarded by the
    InferenceStatistics lock."""

    batched: bool  # its ModelConfig has max_batch_size > 0
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute: BatchStats = field(default_factory=BatchStats)
    batches: dict[int, BatchStats] = field(default_factory=dict)


class RequestTimer:
    """The checkpoints of one V2 infer request: create it when the call starts, call
    `decoded()` and `ran(result.wait_ns)` as it passes them, then record it."""

    __slots__ = ("decoded_ns", "queue_ns", "ran_ns", "start_ns")

    def __init__(self) -> None:
        self.start_ns = perf_counter_ns()
        self.decoded_ns = self.ran_ns = self.queue_ns = 0

    def decoded(self) -> None:
        self.decoded_ns = perf_counter_ns()

    def ran(self, queue_ns: int) -> None:
        """Predictor.predict returned; its run waited `queue_ns` of that time."""
        self.ran_ns = perf_counter_ns()
        self.queue_ns = queue_ns


class InferenceStatistics:
    """Every model version's StatsAggregator. Thread-safe; recording takes one short lock."""

    def __init__(self, predictor: Predictor, batching: BatchingOptions | None = None) -> None:
        self._predictor = predictor
        self._batching = batching
        self._lock = threading.Lock()
        self._versions: dict[tuple[str, int], StatsAggregator] = {}  # guarded by _lock

    def record_success(
        self, name: str, version: int, inputs: Mapping[str, np.ndarray], timer: RequestTimer
    ) -> None:
        end_ns = perf_counter_ns()
        stats = self._versions.get((name, version)) or self._add(name, version)
        batch = _batch_size(inputs) if stats.batched else 1
        compute_input = timer.decoded_ns - timer.start_ns
        compute_infer = timer.ran_ns - timer.decoded_ns - timer.queue_ns
        compute_output = end_ns - timer.ran_ns
        now_ms = time.time_ns() // 1_000_000
        with self._lock:
            stats.last_inference_ms = now_ms
            stats.inference_count += batch
            stats.execution_count += 1
            stats.success.add(end_ns - timer.start_ns)
            stats.queue.add(timer.queue_ns)
            per_batch = stats.batches.get(batch)
            if per_batch is None:
                per_batch = stats.batches[batch] = BatchStats()
            for part in (stats.compute, per_batch):
                part.compute_input.add(compute_input)
                part.compute_infer.add(compute_infer)
                part.compute_output.add(compute_output)

    def record_failure(self, ref: ModelRef, timer: RequestTimer) -> None:
        """Counts a failed request against the version `ref` names, if one is served (an
        unknown model or version has no statistics to count it in)."""
        end_ns = perf_counter_ns()
        try:
            with self._predictor.handle(ref) as handle:
                version = handle.id.version
        except ServingError:
            return
        stats = self._versions.get((ref.name, version)) or self._add(ref.name, version)
        with self._lock:
            stats.last_inference_ms = time.time_ns() // 1_000_000
            stats.fail.add(end_ns - timer.start_ns)

    def model_statistics(self, name: str, version: str) -> Any:
        """The ModelStatisticsResponse for a request's (name, version): every available
        version of every model when `name` is empty; every available version of the model
        when `version` is empty. An unknown model or version fails as ModelMetadata does."""
        core = self._predictor.core
        selected: list[tuple[str, int]] = []
        if not name:
            for model in core.model_names():
                selected.extend((model, v) for v in available_versions(core, model))
        elif version:  # a number or a label: the one version it resolves to now
            with self._predictor.handle(model_ref(name, version)) as handle:
                selected.append((name, handle.id.version))
        else:
            check_model_ready(self._predictor, model_ref(name, version))
            selected.extend((name, v) for v in available_versions(core, name))
        response = pb.ModelStatisticsResponse()
        with self._lock:
            for model, number in selected:
                stats = self._versions.get((model, number))
                _fill(response.model_stats.add(name=model, version=str(number)), stats)
        return response

    def _add(self, name: str, version: int) -> StatsAggregator:
        batched = False
        if self._batching is not None:  # only then can a model be batched: look once
            try:
                _served, signature = self._predictor.signature(ModelRef(name, version))
            except ServingError:  # unloaded meanwhile: count the request unbatched
                signature = None
            batched = signature is not None and max_batch_size(signature, self._batching) > 0
        with self._lock:
            return self._versions.setdefault((name, version), StatsAggregator(batched))


def _batch_size(inputs: Mapping[str, np.ndarray]) -> int:
    for array in inputs.values():
        return int(array.shape[0]) if array.ndim else 1
    return 1


def _fill(message: Any, stats: StatsAggregator | None) -> None:
    """A ModelStatistics message; every duration is present, as Triton's JSON has them."""
    stats = stats or StatsAggregator(batched=False)
    message.last_inference = stats.last_inference_ms
    message.inference_count = stats.inference_count
    message.execution_count = stats.execution_count
    infer = message.inference_stats
    durations: list[tuple[Any, Duration]] = [
        (infer.success, stats.success),
        (infer.fail, stats.fail),
        (infer.queue, stats.queue),
        (infer.cache_hit, Duration()),
        (infer.cache_miss, Duration()),
    ]
    durations += _compute(infer, stats.compute)
    for size in sorted(stats.batches):
        batch = message.batch_stats.add(batch_size=size)
        durations += _compute(batch, stats.batches[size])
    for target, duration in durations:
        target.SetInParent()
        target.count = duration.count
        target.ns = duration.ns


def _compute(message: Any, stats: BatchStats) -> list[tuple[Any, Duration]]:
    return [
        (message.compute_input, stats.compute_input),
        (message.compute_infer, stats.compute_infer),
        (message.compute_output, stats.compute_output),
    ]
