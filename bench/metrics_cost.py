"""What the metrics cost: Predict with monitoring off and on (a benchmark, not a test).

    .venv/bin/python -m bench.metrics_cost [--mode both] [--model tiny] [--rounds 3]

`--mode server`: starts a real servingd on loopback, alternately without and with a
`--monitoring_config_file` (Prometheus enabled: every request updates request_count,
request_latency, runtime_latency and four stage histograms, and the page is scraped once per
run), and drives each with 16 concurrent gRPC callers for a fixed time after a warm-up.
Reported per run: requests per second, the server's CPU time per request (/proc/<pid>/stat)
and, when `perf` is installed and permitted, its user-space instructions per request. On a
machine shared with other work, throughput and CPU time swing by 10-20% from run to run;
instructions barely move, so their on/off ratio is the figure to read. Rounds alternate
off/on so that drift hits both alike; the summary gives medians and the spread (min-max) of
the per-round on/off ratios.

`--mode in_process`: calls the gRPC servicer and the REST handler directly on a ServerCore in
this process, in blocks alternating off and on, and reports this process's CPU time per
request. Without the transport (HTTP/2, protobuf parsing) the metrics' share is larger than
in a server: an upper bound.

`--model tiny` (y = 0.5x + 2 on one float, a run of a few µs) is the worst case for the
metrics' share; `--model mlp` (256-1024-1024-10) is closer to a real model.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench.batching import free_port, wait_available
from servingd.apis.grpc.prediction_service import PredictionService
from servingd.apis.predictor import Predictor
from servingd.apis.rest.rest_api_handler import RestApiHandler
from servingd.config import single_model_config
from servingd.monitoring.metrics import ServingMetrics
from servingd.protos.tensorflow.core.framework import types_pb2
from servingd.protos.tensorflow_serving.apis import (
    predict_pb2,
    prediction_service_pb2_grpc,
)
from servingd.server_core import ServerCore, ServerCoreOptions
from servingd.testing.models import affine, mlp, write_version

MODEL = "model"
# --model: (what it is, the model, its input width). `tiny` is the worst case for the metrics'
# share: a run of a few µs; `mlp` (256-1024-1024-10) is closer to a real model.
MODELS = {
    "tiny": ("y = 0.5x + 2 on 1 float", lambda: affine(0.5, 2.0), 1),
    "mlp": ("MLP 256-1024-1024-10, 1 row", lambda: mlp(), 256),
}
METRICS_PATH = "/monitoring/prometheus/metrics"


@dataclass(frozen=True)
class Run:
    requests: int
    seconds: float
    cpu_seconds: float
    instructions: int | None  # user-space, from `perf stat`; None without perf

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds / max(1, self.requests) * 1e6

    @property
    def kilo_instructions_per_request(self) -> float | None:
        if self.instructions is None:
            return None
        return self.instructions / max(1, self.requests) / 1000


class PerfCounter:
    """`perf stat -e instructions:u -p PID` over a window: the server's user-space
    instructions, which other processes on the machine barely disturb (unlike its time)."""

    def __init__(self, pid: int) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        if shutil.which("perf") is None:
            return
        self._process = subprocess.Popen(
            ["perf", "stat", "-x,", "-e", "instructions:u", "-p", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> int | None:
        if self._process is None:
            return None
        self._process.send_signal(signal.SIGINT)
        _out, err = self._process.communicate(timeout=10)
        for line in err.decode(errors="replace").splitlines():
            fields = line.split(",")
            if len(fields) > 2 and fields[2].startswith("instructions") and fields[0].isdigit():
                return int(fields[0])
        return None  # perf not permitted here (perf_event_paranoid), or no count


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(
    base: Path, extra: list[str], log: Path
) -> tuple[subprocess.Popen[bytes], int, int]:
    port, rest_port = free_port(), free_port()
    args = [
        sys.executable,
        "-m",
        "servingd.main",
        f"--port={port}",
        f"--rest_api_port={rest_port}",
        "--host=127.0.0.1",
        f"--model_name={MODEL}",
        f"--model_base_path={base}",
        "--log_level=WARNING",
        # One onnxruntime thread: its pool's idle threads spin, which would bury the request
        # path's instructions (the count this bench relies on) under their spinning.
        "--tensorflow_intra_op_parallelism=1",
        *extra,
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    return process, port, rest_port


def predict_request(width: int = 1) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    x = request.inputs["x"]
    x.dtype = types_pb2.DT_FLOAT
    x.tensor_shape.dim.add().size = 1
    x.tensor_shape.dim.add().size = width
    x.float_val.extend([1.0] * width)
    return request


def scrape(rest_port: int) -> int:
    url = f"http://127.0.0.1:{rest_port}{METRICS_PATH}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return len(response.read())


async def drive(pid: int, port: int, rest_port: int, args: argparse.Namespace, on: bool) -> Run:
    callers, warmup_s, measure_s = args.callers, args.warmup_seconds, args.seconds
    request = predict_request(MODELS[args.model][2])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        start = time.monotonic()
        measure_from, measure_to = start + warmup_s, start + warmup_s + measure_s
        counted = 0
        cpu_at_start: float | None = None
        perf: PerfCounter | None = None

        async def caller() -> None:
            nonlocal counted, cpu_at_start, perf
            while (now := time.monotonic()) < measure_to:
                await stub.Predict(request, timeout=30)
                if now >= measure_from:
                    if cpu_at_start is None:
                        cpu_at_start = cpu_seconds(pid)
                        perf = PerfCounter(pid)
                    counted += 1

        async def scraper() -> None:
            # One scrape mid-run, as Prometheus would, so the page's cost is in the numbers.
            await asyncio.sleep(warmup_s + measure_s / 2)
            await asyncio.to_thread(scrape, rest_port)

        await asyncio.gather(*(caller() for _ in range(callers)), *([scraper()] if on else []))
        cpu_used = cpu_seconds(pid) - (cpu_at_start or 0.0)
        instructions = None if perf is None else perf.stop()
    return Run(counted, measure_s, cpu_used, instructions)


def run_once(base: Path, extra: list[str], args: argparse.Namespace, log: Path, on: bool) -> Run:
    process, port, rest_port = start_server(base, extra, log)
    try:
        wait_available(process, port, log, MODEL)
        return asyncio.run(drive(process.pid, port, rest_port, args, on))
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


async def in_process_blocks(
    base: Path, args: argparse.Namespace
) -> dict[str, dict[str, list[float]]]:
    """CPU µs per request of each block, by entrypoint and metrics off/on."""
    metrics = ServingMetrics()
    core = ServerCore.create(
        single_model_config(MODEL, str(base)),
        ServerCoreOptions(file_system_poll_wait_seconds=0, use_watchdog=False),
        metrics=metrics,
    )
    try:
        predictor = Predictor(core)
        grpc_service = PredictionService(predictor)
        rest_handler = RestApiHandler(predictor)
        width = MODELS[args.model][2]
        request = predict_request(width)
        body = ('{"instances": [[' + ", ".join(["1.0"] * width) + "]]}").encode()
        path = f"/v1/models/{MODEL}:predict"

        request_bytes = request.SerializeToString()

        async def grpc_call() -> None:
            answer = await grpc_service.Predict(request_bytes, None)  # type: ignore[arg-type]
            assert predict_pb2.PredictResponse.FromString(answer).outputs["y"].float_val

        async def rest_call() -> None:
            assert (await rest_handler.process("POST", path, body)).startswith(b'{"predictions"')

        calls = {"grpc": grpc_call, "rest": rest_call}
        per_caller = max(1, args.block // args.callers)

        async def caller(call: object) -> None:
            for _ in range(per_caller):
                await call()  # type: ignore[operator]

        results: dict[str, dict[str, list[float]]] = {k: {"off": [], "on": []} for k in calls}
        for entrypoint, call in calls.items():
            for block in range(-1, args.blocks):  # block -1 warms up
                for label in ("off", "on"):
                    grpc_service.metrics = metrics if label == "on" else None
                    rest_handler._metrics = grpc_service.metrics
                    started = time.process_time()
                    await asyncio.gather(*(caller(call) for _ in range(args.callers)))
                    used = time.process_time() - started
                    if block >= 0:
                        results[entrypoint][label].append(used / (per_caller * args.callers) * 1e6)
        return results
    finally:
        core.stop()


def report_in_process(base: Path, args: argparse.Namespace) -> None:
    results = asyncio.run(in_process_blocks(base, args))
    print(
        f"in process: {args.blocks} blocks of {args.block} requests per mode, alternating, "
        f"{args.callers} concurrent callers, CPU time of this process"
    )
    for entrypoint, by_mode in results.items():
        off, on = by_mode["off"], by_mode["on"]
        ratios = [b / a for a, b in zip(off, on, strict=True)]
        extra = [b - a for a, b in zip(off, on, strict=True)]
        print(
            f"  {entrypoint}: CPU µs/request off {spread(off)}; on {spread(on)}\n"
            f"        on/off per block pair: {spread(ratios)}; "
            f"extra µs/request: median {statistics.median(extra):.2f}"
        )


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f}, min {min(values):.3f}, max {max(values):.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.metrics_cost", description=__doc__)
    p.add_argument("--callers", type=int, default=16)
    p.add_argument("--seconds", type=float, default=5.0, help="measured time per run")
    p.add_argument("--warmup_seconds", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=3, help="off/on pairs of servers")
    p.add_argument("--mode", choices=("in_process", "server", "both"), default="both")
    p.add_argument("--blocks", type=int, default=15, help="in process: off/on block pairs")
    p.add_argument("--block", type=int, default=2000, help="in process: requests per block")
    p.add_argument("--model", choices=sorted(MODELS), default="tiny")
    args = p.parse_args(argv)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory(prefix="servingd-bench-") as tmp:
        root = Path(tmp)
        base = root / MODEL
        description, build, _width = MODELS[args.model]
        write_version(base, 1, build())
        monitoring = root / "monitoring.config"
        monitoring.write_text("prometheus_config { enable: true }\n")
        if args.mode in ("in_process", "both"):
            report_in_process(base, args)
        if args.mode == "in_process":
            return 0
        print(
            f"{description}, {args.callers} concurrent gRPC callers, {args.seconds:.0f} s "
            f"measured after {args.warmup_seconds:.0f} s, {args.rounds} off/on rounds, "
            f"{cpus} CPU(s), load average {os.getloadavg()[0]:.2f}"
        )
        runs: dict[str, list[Run]] = {"off": [], "on": []}
        for round_number in range(args.rounds):
            for label, extra in (("off", []), ("on", [f"--monitoring_config_file={monitoring}"])):
                log = root / f"servingd-{label}-{round_number}.log"
                result = run_once(base, extra, args, log, on=label == "on")
                runs[label].append(result)
                kilo = result.kilo_instructions_per_request
                print(
                    f"round {round_number + 1} metrics {label:>3}: {result.throughput:8.1f} req/s"
                    f"   server CPU {result.cpu_us_per_request:6.1f} µs/request"
                    + ("" if kilo is None else f"   {kilo:6.0f}k instructions/request")
                    + f"   ({result.requests} requests)"
                )
        throughput_ratios = [
            on.throughput / off.throughput for off, on in zip(runs["off"], runs["on"], strict=True)
        ]
        cpu_ratios = [
            on.cpu_us_per_request / off.cpu_us_per_request
            for off, on in zip(runs["off"], runs["on"], strict=True)
        ]
        for label in ("off", "on"):
            print(
                f"metrics {label:>3}: req/s {spread([r.throughput for r in runs[label]])}; "
                f"CPU µs/request {spread([r.cpu_us_per_request for r in runs[label]])}"
            )
        print(f"throughput on/off per round: {spread(throughput_ratios)}")
        print(f"server CPU per request on/off per round: {spread(cpu_ratios)}")
        pairs = [
            (off.kilo_instructions_per_request, on.kilo_instructions_per_request)
            for off, on in zip(runs["off"], runs["on"], strict=True)
        ]
        if all(a is not None and b is not None for a, b in pairs):
            ratios = [b / a for a, b in pairs if a and b]
            print(f"server instructions per request on/off per round: {spread(ratios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
