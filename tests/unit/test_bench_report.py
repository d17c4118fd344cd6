"""bench/report.py: the issue's targets come from per-round ratios of side-by-side series."""

from __future__ import annotations

import math

import pytest

from bench.loadgen import Point
from bench.report import Series, Target, cpu_jiffies, paired


def series(title: str, concurrency: int, rates: list[float], p50s: list[float]) -> Series:
    found = Series(title)
    for rate, p50 in zip(rates, p50s, strict=True):
        found.add(Point(concurrency, round(rate * 10), 0, 10.0, p50, p50 * 2))
    return found


def test_paired_ratios_are_round_by_round_not_of_medians() -> None:
    # The machine halves its speed in round 2: each round's ratio sees it on both sides.
    servingd = series("s", 16, [800, 400, 820], [1.0, 2.0, 1.0])
    floor = series("f", 16, [1000, 500, 1000], [0.8, 1.6, 0.8])
    rounds = paired(servingd, floor, 16, lambda p: p.throughput)
    assert rounds == (0.8, 0.8, 0.82)
    assert paired(servingd, floor, 16, lambda p: p.p50_ms) == (1.25, 1.25, 1.25)


def test_paired_is_empty_when_the_series_were_not_measured_in_the_same_rounds() -> None:
    servingd = series("s", 16, [800, 400], [1.0, 2.0])
    floor = series("f", 16, [1000], [0.8])
    assert paired(servingd, floor, 16, lambda p: p.throughput) == ()
    assert paired(servingd, Series("none"), 16, lambda p: p.throughput) == ()


def test_per_round_target_is_the_median_and_counts_the_rounds_that_pass() -> None:
    target = Target.per_round("tiny c=16", (0.7, 0.85, 0.82, 0.79, 0.81), 0.8, at_most=False)
    assert target.measured == pytest.approx(0.81)
    assert target.passed
    assert target.row() == "| tiny c=16 | 0.81x | 0.70-0.85x, 3 of 5 pass | >= 0.8x | PASS |"

    latency = Target.per_round("tiny c=1 p50", (1.2, 1.4, 1.35), 1.3, at_most=True)
    assert latency.measured == 1.35
    assert not latency.passed
    assert latency.row().endswith("| 1.20-1.40x, 1 of 3 pass | <= 1.3x | FAIL |")


def test_a_target_without_rounds_is_not_measured() -> None:
    target = Target.per_round("mlp batching on / off", (), 2.0, at_most=False)
    assert math.isnan(target.measured)
    assert target.row() == "| mlp batching on / off | -x | - | >= 2x | not measured |"
    plain = Target("idle", 0.5, 1.0, True, "%")
    assert plain.row() == "| idle | 0.50% | - | <= 1% | PASS |"


def test_cpu_jiffies_reads_steal_and_all_ticks_from_proc_stat() -> None:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    steal, total = cpu_jiffies()
    assert 0 <= steal <= total
    # user, nice, system, idle, iowait, irq, softirq, steal: never less than when read above.
    assert steal >= fields[7]
    assert total >= sum(fields[:8])
