"""Results: every servingd figure as a ratio to its floors, the issue's targets, RESULTS.md."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bench.lifecycle import Lifecycle
from bench.loadgen import Point

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


@dataclass
class Series:
    """One server set-up on one model through one client, at each concurrency (repeats kept)."""

    title: str
    points: dict[int, list[Point]] = field(default_factory=dict)
    rss_bytes: int = 0

    def add(self, point: Point) -> None:
        self.points.setdefault(point.concurrency, []).append(point)

    def median(self, concurrency: int, value: Callable[[Point], float]) -> float:
        found = self.points.get(concurrency)
        return statistics.median(value(p) for p in found) if found else float("nan")

    def spread(self, concurrency: int, value: Callable[[Point], float]) -> str:
        """ "" for one run; "±x%" (half the max-min range over the median) for repeats."""
        found = [value(p) for p in self.points.get(concurrency, [])]
        if len(found) < 2:
            return ""
        mid = statistics.median(found)
        return f" ±{(max(found) - min(found)) / 2 / mid * 100:.0f}%" if mid else ""

    def throughput(self, concurrency: int) -> float:
        return self.median(concurrency, lambda p: p.throughput)

    def p50(self, concurrency: int) -> float:
        return self.median(concurrency, lambda p: p.p50_ms)

    def errors(self) -> int:
        return sum(p.errors for points in self.points.values() for p in points)


def _fmt(value: float, digits: int = 0) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"  # NaN: not measured


def _ratio(a: float, b: float) -> str:
    return "-" if not b or a != a or b != b else f"{a / b:.2f}x"


def series_table(series: Series, floor: Series | None, compute: Series | None) -> list[str]:
    """Rows per concurrency: the series' own figures, then ratios to the floors."""
    lines = [
        f"**{series.title}**"
        + (f" (RSS {series.rss_bytes / 2**20:.0f} MiB)" if series.rss_bytes else ""),
        "",
        "| c | req/s | p50 ms | p99 ms | server CPU µs/req | client CPU % | errors "
        "| req/s / protocol floor | p50 / protocol floor | req/s / compute floor |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in sorted(series.points):
        thr = series.throughput(c)
        client = series.median(c, lambda p: p.client_cpu_s / p.seconds * 100)
        lines.append(
            f"| {c} | {_fmt(thr)}{series.spread(c, lambda p: p.throughput)} "
            f"| {_fmt(series.p50(c), 2)}{series.spread(c, lambda p: p.p50_ms)} "
            f"| {_fmt(series.median(c, lambda p: p.p99_ms), 2)} "
            f"| {_fmt(series.median(c, lambda p: p.server_cpu_us_per_request))} "
            f"| {_fmt(client)} | {sum(p.errors for p in series.points[c])} "
            f"| {_ratio(thr, floor.throughput(c)) if floor else '-'} "
            f"| {_ratio(series.p50(c), floor.p50(c)) if floor else '-'} "
            f"| {_ratio(thr, compute.throughput(c)) if compute else '-'} |"
        )
    return [*lines, ""]


def paired(
    series: Series, base: Series, concurrency: int, value: Callable[[Point], float]
) -> tuple[float, ...]:
    """`series` over `base`, round by round: the i-th point of each was measured in the same
    round of `side_by_side`, seconds apart, so each ratio saw one machine. On a VM whose
    speed drifts over minutes that is the ratio to trust; a ratio of two medians mixes
    rounds."""
    ours, theirs = series.points.get(concurrency, []), base.points.get(concurrency, [])
    if len(ours) != len(theirs):
        return ()  # not measured in the same rounds
    return tuple(value(a) / value(b) for a, b in zip(ours, theirs, strict=True) if value(b))


@dataclass(frozen=True)
class Target:
    name: str
    measured: float  # the ratio (or value) the target is about
    limit: float
    at_most: bool  # True: measured <= limit passes; False: measured >= limit passes
    unit: str = "x"
    rounds: tuple[float, ...] = ()  # per-round ratios, when both sides were measured in turns

    @classmethod
    def per_round(cls, name: str, rounds: tuple[float, ...], limit: float, at_most: bool) -> Target:
        """A target measured as the median of its per-round ratios."""
        measured = statistics.median(rounds) if rounds else float("nan")
        return cls(name, measured, limit, at_most, rounds=rounds)

    def holds(self, value: float) -> bool:
        return value <= self.limit if self.at_most else value >= self.limit

    @property
    def passed(self) -> bool:
        return self.measured == self.measured and self.holds(self.measured)

    def row(self) -> str:
        sign = "<=" if self.at_most else ">="
        verdict = "PASS" if self.passed else "FAIL"
        if self.measured != self.measured:
            verdict = "not measured"
        measured = f"{_fmt(self.measured, 2)}{self.unit}"
        rounds = "-"
        if self.rounds:
            held = sum(self.holds(r) for r in self.rounds)
            rounds = (
                f"{min(self.rounds):.2f}-{max(self.rounds):.2f}{self.unit}, "
                f"{held} of {len(self.rounds)} pass"
            )
        limit = f"{sign} {self.limit:g}{self.unit}"
        return f"| {self.name} | {measured} | {rounds} | {limit} | {verdict} |"


def targets(s: dict[str, Series], life: Lifecycle | None) -> list[Target]:
    def get(key: str) -> Series:
        return s.get(key) or Series(key)

    tiny, tiny_floor = get("grpc/tiny/servingd"), get("grpc/tiny/floor")
    mlp, mlp_floor, mlp_batch = (
        get("grpc/mlp/servingd"),
        get("grpc/mlp/floor"),
        get("grpc/mlp/batching"),
    )
    rest = get("rest/tiny/servingd")
    typed, raw = get("encoding/float_val"), get("encoding/tensor_content")
    nan = float("nan")

    def cpu(series: Series) -> float:
        return series.median(16, lambda p: p.server_cpu_us_per_request)

    def throughput(point: Point) -> float:
        return point.throughput

    def p50(point: Point) -> float:
        return point.p50_ms

    found = [
        Target.per_round(
            "tiny gRPC c=1: p50 / protocol floor p50", paired(tiny, tiny_floor, 1, p50), 1.3, True
        ),
        Target.per_round(
            "tiny gRPC c=16: req/s / protocol floor",
            paired(tiny, tiny_floor, 16, throughput),
            0.8,
            False,
        ),
        Target.per_round(
            "mlp gRPC c=16 batching on: req/s / protocol floor",
            paired(mlp_batch, mlp_floor, 16, throughput),
            0.7,
            False,
        ),
        Target.per_round(
            "mlp gRPC c=16: batching on / batching off",
            paired(mlp_batch, mlp, 16, throughput),
            2.0,
            False,
        ),
        Target(
            "REST tiny c=16: req/s / gRPC req/s",
            rest.throughput(16) / tiny.throughput(16),
            0.5,
            False,
        ),
        Target(
            "256 floats: server CPU per request, float_val / tensor_content",
            cpu(typed) / cpu(raw),
            2.0,
            True,
        ),
    ]
    if life is not None:
        found += [
            Target("idle server CPU (% of a core)", life.idle_cpu_percent, 1.0, True, "%"),
            Target(
                "start -> ports open, tiny (median s)",
                statistics.median(life.startup_seconds),
                1.5,
                True,
                " s",
            ),
            Target(
                f"RSS growth over {life.cycles} load/unload cycles",
                life.rss_growth * 100,
                5.0,
                True,
                "%",
            ),
        ]
    else:
        found += [
            Target(name, nan, limit, True, unit)
            for name, limit, unit in (
                ("idle server CPU (% of a core)", 1.0, "%"),
                ("start -> ports open, tiny (median s)", 1.5, " s"),
                ("RSS growth over load/unload cycles", 5.0, "%"),
            )
        ]
    return found


def _version(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0] if text else "?"
    except (OSError, subprocess.SubprocessError):
        return "not installed"


def cpu_jiffies() -> tuple[int, int]:
    """(steal, all) clock ticks of every core since boot, from /proc/stat. Steal is time a
    virtual CPU was ready to run and the host ran something else: on a shared VM it is the
    neighbours' share, which the load average inside the VM does not show."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]  # user .. steal (guest is in user)
    return ticks[7], sum(ticks)


def machine(load_before: tuple[float, float, float], jiffies_before: tuple[int, int]) -> list[str]:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    packages = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("grpcio", "protobuf", "onnxruntime", "numpy", "aiohttp")
    )
    load_now = os.getloadavg()
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores; memory {mem_kib / 2**20:.0f} GiB",
        f"- OS: {platform.system()} {platform.release()}; Python {platform.python_version()}",
        f"- {packages}",
        f"- {_version(['h2load', '--version'])}; {_version(['wrk', '-v'])}",
        f"- load average (1/5/15 min) before: {' / '.join(f'{x:.2f}' for x in load_before)}; "
        f"after: {' / '.join(f'{x:.2f}' for x in load_now)}",
        f"- CPU time the host took (steal) during the run: {_steal_percent(jiffies_before):.1f}% "
        "of the cores' time",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
    ]


def _steal_percent(before: tuple[int, int]) -> float:
    steal, total = cpu_jiffies()
    return (steal - before[0]) / (total - before[1]) * 100 if total > before[1] else 0.0


def write_results(path: Path, body: Iterable[str]) -> None:
    """Replaces the text between the bench markers (the rest of the file is prose)."""
    generated = "\n".join([BEGIN, *body, END])
    text = path.read_text() if path.exists() else f"# Benchmark results\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    path.write_text(head + generated + tail)
