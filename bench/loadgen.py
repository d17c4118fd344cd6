"""The load generators, each run for one point (one concurrency) against a running server.

All three are native programs, so the client takes little of the CPU the server needs:
h2load replays a pre-serialized gRPC frame, wrk POSTs a JSON body, perf_analyzer speaks
TF Serving's API itself (GetModelMetadata, then Predict with typed `float_val` inputs).
Server CPU is read from /proc before and after the point; client CPU from the kernel's account
of reaped children.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.tools import perf_analyzer_env
from bench.workload import PREDICT_PATH


@dataclass(frozen=True)
class Point:
    """One measured point: `requests` answered in `seconds` at `concurrency`."""

    concurrency: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def server_cpu_us_per_request(self) -> float:
        return self.server_cpu_s / self.requests * 1e6 if self.requests else float("nan")


CpuClock = Callable[[], float]


def _run(
    args: Sequence[str], cpu: CpuClock, env: dict[str, str] | None = None
) -> tuple[str, float, float]:
    """Runs a load generator to completion: (its output, its CPU seconds, server CPU seconds).
    The client's CPU comes from the kernel's accounting of reaped children (os.times)."""
    before = os.times()
    server_before = cpu()
    result = subprocess.run(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, check=False
    )
    server_cpu = cpu() - server_before
    after = os.times()
    client_cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    if result.returncode:
        raise RuntimeError(f"{args[0]} failed ({result.returncode}):\n{result.stdout[-3000:]}")
    return result.stdout, client_cpu, server_cpu


def h2load(
    binary: str,
    port: int,
    frame: Path,
    concurrency: int,
    seconds: float,
    cpu: CpuClock,
    response_frame_bytes: int,
) -> Point:
    """gRPC Predict from `frame` over `concurrency` HTTP/2 connections, one stream each.

    h2load only sees HTTP statuses, and a gRPC error is HTTP 200 with a non-zero grpc-status
    trailer and no message: a response whose DATA is not exactly the expected frame counts
    as an error."""
    common = [
        binary,
        f"--data={frame}",
        "--header=content-type: application/grpc",
        "--header=te: trailers",
        "--max-concurrent-streams=1",
        f"--clients={concurrency}",
        f"http://127.0.0.1:{port}{PREDICT_PATH}",
    ]
    warmup = max(200, 50 * concurrency)
    subprocess.run([*common, f"--requests={warmup}"], capture_output=True, check=True, timeout=300)
    with tempfile.NamedTemporaryFile(suffix=".h2log") as log:
        output, client_cpu, server_cpu = _run(
            [*common, f"--duration={seconds:g}", f"--log-file={log.name}"], cpu
        )
        latencies_us = _column(Path(log.name), 2)
    done = _int(r"requests: \d+ total, \d+ started, (\d+) done", output)
    succeeded = _int(r"(\d+) succeeded", output)
    data = _int(r"\((\d+)\) data", output)
    elapsed = _float(r"finished in ([\d.]+)s", output)
    # Error answers carry no message, so every missing frame's worth of DATA is one error.
    answered = min(succeeded, data // response_frame_bytes) if response_frame_bytes else succeeded
    errors = done - answered
    return Point(
        concurrency,
        answered,
        errors,
        elapsed,
        _percentile_ms(latencies_us, 50),
        _percentile_ms(latencies_us, 99),
        server_cpu,
        client_cpu,
    )


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%s]==]
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format("BENCH %%d %%d %%d %%d %%d\\n",
    summary.requests, errors.connect + errors.read + errors.write + errors.status + errors.timeout,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk(
    binary: str, url: str, body: bytes, concurrency: int, seconds: float, cpu: CpuClock
) -> Point:
    """REST POSTs of `body` over `concurrency` keep-alive connections (one wrk thread)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT % body.decode())
    try:
        common = [binary, "--threads=1", f"--connections={concurrency}", f"--script={script.name}"]
        subprocess.run([*common, "--duration=1s", url], capture_output=True, check=True, timeout=60)
        output, client_cpu, server_cpu = _run([*common, f"--duration={seconds:g}s", url], cpu)
    finally:
        os.unlink(script.name)
    found = re.search(r"^BENCH (\d+) (\d+) (\d+) (\d+) (\d+)$", output, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"wrk printed no summary:\n{output}")
    requests, errors, micros, p50, p99 = (int(x) for x in found.groups())
    return Point(
        concurrency, requests - errors, errors, micros / 1e6, p50 / 1000, p99 / 1000,
        server_cpu, client_cpu,
    )  # fmt: skip


def perf_analyzer(
    binary: str,
    port: int,
    model: str,
    shape: str,
    concurrency: int,
    seconds: float,
    cpu: CpuClock,
    extra: Sequence[str] = (),
) -> Point:
    """Triton's perf_analyzer in TF Serving mode (sync calls, one thread per concurrent call).

    It reads GetModelMetadata, then sends Predict with typed `float_val` inputs. It measures
    windows of `seconds` until the last three agree within the stability percentage, at most
    three. That check is not how this bench judges a point, and on a shared VM a 2x swing
    between windows happens: at 100% it failed a 40-minute run in its sixth point. So any
    three windows count, as in tests/integration/test_perf_analyzer.py."""
    with tempfile.NamedTemporaryFile(suffix=".csv") as report:
        args = [
            binary,
            *("-m", model),
            "--service-kind=tfserving",
            f"--shape={shape}",
            *("-u", f"127.0.0.1:{port}"),
            *("-i", "grpc"),
            f"--concurrency-range={concurrency}",
            f"--measurement-interval={int(seconds * 1000)}",
            "--max-trials=3",
            "--stability-percentage=1000",
            *("-f", report.name),
            *extra,
        ]
        started = time.monotonic()
        output, client_cpu, server_cpu = _run(args, cpu, env=perf_analyzer_env())
        with open(report.name) as f:
            rows = list(csv.DictReader(f))
    if "error" in output.lower() or not rows:
        raise RuntimeError(f"perf_analyzer reported a problem:\n{output[-3000:]}")
    row = rows[-1]
    throughput = float(row["Inferences/Second"])
    # Server CPU covers every trial perf_analyzer ran; scale it to the reported window.
    window = time.monotonic() - started
    requests = round(throughput * seconds)
    return Point(
        concurrency,
        requests,
        0,
        seconds,
        float(row["p50 latency"]) / 1000,
        float(row["p99 latency"]) / 1000,
        server_cpu * seconds / window,
        client_cpu * seconds / window,
    )


def _column(path: Path, index: int) -> np.ndarray:
    rows = [line.split("\t") for line in path.read_text().splitlines() if line]
    return np.array([float(row[index]) for row in rows if len(row) > index], dtype=np.float64)


def _percentile_ms(values_us: np.ndarray, q: float) -> float:
    return float(np.percentile(values_us, q)) / 1000 if values_us.size else float("nan")


def _int(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    if found is None:
        raise RuntimeError(f"no match for {pattern!r} in:\n{text}")
    return int(found.group(1))


def _float(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    if found is None:
        raise RuntimeError(f"no match for {pattern!r} in:\n{text}")
    return float(found.group(1))
