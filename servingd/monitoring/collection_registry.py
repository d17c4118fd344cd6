"""Counters, gauges and samplers with TF's semantics, collected the prometheus_client way.

TF Serving's metrics are `tensorflow::monitoring` Counter, Gauge and Sampler (a histogram)
cells keyed by label values, gathered by a CollectionRegistry. These are the same three
kinds, cheap enough for the request path (a dict lookup, a bisect and an uncontended lock
per update), and `CollectionRegistry` is a prometheus_client Collector: `collect()` yields
prometheus_client metric families, so the standard client's registry and parser work on them.

Names are TF's raw names (`/tensorflow/serving/request_count`); `prometheus_name` applies
TF's exporter mangling (`:tensorflow:serving:request_count`). A sampler's bucket `i` counts
values in [limit[i-1], limit[i]) (TF's Histogram uses upper_bound), and a last bucket holds
everything from the last limit up.
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TypeVar

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

Labels = tuple[str, ...]
_C = TypeVar("_C")  # a family's cell type

_NOT_NAME_CHAR = re.compile(r"[^a-zA-Z0-9_]")


def prometheus_name(name: str) -> str:
    """TF's GetPrometheusMetricName: every character outside [a-zA-Z0-9_] becomes ':'."""
    mangled = _NOT_NAME_CHAR.sub(":", name)
    return "_" + mangled if mangled[:1].isdigit() else mangled


def exponential_buckets(scale: float, growth_factor: float, count: int) -> tuple[float, ...]:
    """TF's Buckets::Exponential limits, multiplied up step by step as TF does (so the
    limits, and the `le` labels printed from them, are TF's to the last bit)."""
    limits = []
    bound = scale
    for _ in range(count):
        limits.append(bound)
        bound *= growth_factor
    return tuple(limits)


class _Family:
    """A metric and its cells, one per distinct tuple of label values."""

    kind = ""

    def __init__(self, name: str, description: str, label_names: Sequence[str]) -> None:
        self.name = name
        self.prometheus_name = prometheus_name(name)
        self.description = description
        self.label_names = tuple(label_names)
        self._cells_lock = threading.Lock()

    def _labels_dict(self, values: Labels) -> dict[str, str]:
        return dict(zip(self.label_names, values, strict=True))

    def _check(self, values: Labels) -> None:
        if len(values) != len(self.label_names):
            raise ValueError(
                f"{self.name} takes {len(self.label_names)} label value(s) "
                f"{self.label_names}; got {values}"
            )

    def _new_cell(self, cells: dict[Labels, _C], values: Labels, make: Callable[[], _C]) -> _C:
        """`get_cell`'s slow path: the cell for `values`, made once however many threads
        ask at the same time."""
        self._check(values)
        with self._cells_lock:
            cell = cells.get(values)
            if cell is None:
                cell = cells[values] = make()
            return cell


class CounterCell:
    """`value` is written under `lock` (shared with other cells when the family was given
    one, so that a caller updating several cells at once takes one lock)."""

    __slots__ = ("lock", "value")

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self.value = 0

    def increment_by(self, step: int = 1) -> None:
        with self.lock:
            self.value += step


class Counter(_Family):
    kind = "counter"

    def __init__(
        self, name: str, description: str, *label_names: str, lock: threading.Lock | None = None
    ) -> None:
        super().__init__(name, description, label_names)
        self._lock = lock
        self._cells: dict[Labels, CounterCell] = {}

    def get_cell(self, *values: str) -> CounterCell:
        cell = self._cells.get(values)
        if cell is None:
            cell = self._new_cell(
                self._cells, values, lambda: CounterCell(self._lock or threading.Lock())
            )
        return cell

    def points(self) -> list[tuple[Labels, float]]:
        return sorted((values, cell.value) for values, cell in list(self._cells.items()))

    def to_metric(self) -> Metric:
        metric = Metric(self.prometheus_name, self.description, "counter")
        for values, value in self.points():
            # The sample carries the family's own name: TF prints no `_total` suffix.
            metric.add_sample(self.prometheus_name, self._labels_dict(values), value)
        return metric


class Gauge(_Family):
    """A gauge whose points are read from `source` at collection time (current state is
    kept by whoever owns it, e.g. the version-state listener, not copied on every change)."""

    kind = "gauge"

    def __init__(self, name: str, description: str, *label_names: str) -> None:
        super().__init__(name, description, label_names)
        self._source: Callable[[], Mapping[Labels, float]] = dict

    def set_source(self, source: Callable[[], Mapping[Labels, float]]) -> None:
        self._source = source

    def points(self) -> list[tuple[Labels, float]]:
        return sorted(self._source().items())

    def to_metric(self) -> Metric:
        metric = Metric(self.prometheus_name, self.description, "gauge")
        for values, value in self.points():
            metric.add_sample(self.prometheus_name, self._labels_dict(values), value)
        return metric


class SamplerCell:
    """`counts` (per bucket, not cumulative; the last is the overflow bucket) and `sum` are
    written under `lock`, which may be shared as CounterCell's is."""

    __slots__ = ("counts", "limits", "lock", "sum")

    def __init__(self, limits: tuple[float, ...], lock: threading.Lock) -> None:
        self.limits = limits
        self.lock = lock
        self.counts = [0] * (len(limits) + 1)
        self.sum = 0.0

    def add(self, value: float) -> None:
        index = bisect_right(self.limits, value)
        with self.lock:
            self.counts[index] += 1
            self.sum += value

    def snapshot(self) -> tuple[list[int], float]:
        with self.lock:
            return list(self.counts), self.sum


class Sampler(_Family):
    """TF's monitoring::Sampler: a histogram per label tuple, with fixed bucket limits."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        description: str,
        limits: tuple[float, ...],
        *label_names: str,
        lock: threading.Lock | None = None,
    ) -> None:
        super().__init__(name, description, label_names)
        self.limits = limits
        self._lock = lock
        self._cells: dict[Labels, SamplerCell] = {}

    def get_cell(self, *values: str) -> SamplerCell:
        cell = self._cells.get(values)
        if cell is None:
            lock = self._lock
            cell = self._new_cell(
                self._cells, values, lambda: SamplerCell(self.limits, lock or threading.Lock())
            )
        return cell

    def points(self) -> list[tuple[Labels, tuple[list[int], float]]]:
        return sorted(
            ((values, cell.snapshot()) for values, cell in list(self._cells.items())),
            key=lambda point: point[0],
        )

    def to_metric(self) -> Metric:
        name = self.prometheus_name
        metric = Metric(name, self.description, "histogram")
        for values, (counts, total) in self.points():
            labels = self._labels_dict(values)
            cumulative = 0
            for index, count in enumerate(counts):
                cumulative += count
                # absl's StrCat(double) prints six significant digits, as %g does.
                le = "+Inf" if index == len(self.limits) else f"{self.limits[index]:.6g}"
                metric.add_sample(name + "_bucket", {**labels, "le": le}, cumulative)
            metric.add_sample(name + "_sum", labels, total)
            metric.add_sample(name + "_count", labels, cumulative)
        return metric


MetricFamily = Counter | Gauge | Sampler
F = TypeVar("F", Counter, Gauge, Sampler)


class CollectionRegistry(Collector):
    """TF's CollectionRegistry: every metric of one server, by raw name."""

    def __init__(self) -> None:
        self._metrics: dict[str, MetricFamily] = {}
        self._before_collect: list[Callable[[], None]] = []

    def before_collect(self, callback: Callable[[], None]) -> None:
        """`callback` runs at the start of every `collect` (to fold buffered updates in)."""
        self._before_collect.append(callback)

    def register(self, metric: F) -> F:
        if metric.name in self._metrics:
            raise ValueError(f"Cannot register 2 metrics with the same name: {metric.name}")
        self._metrics[metric.name] = metric
        return metric

    def find(self, name: str) -> MetricFamily | None:
        """A metric by TF's raw name or by its exported (mangled) name."""
        metric = self._metrics.get(name)
        if metric is not None:
            return metric
        return next((m for m in self._metrics.values() if m.prometheus_name == name), None)

    def collect(self) -> Iterator[Metric]:
        for callback in self._before_collect:
            callback()
        # Sorted by name, as TF's exporter walks its descriptor map.
        for name in sorted(self._metrics):
            yield self._metrics[name].to_metric()
