"""Throughput of the `mlp` model with server-side batching off and on (a benchmark, not a test).

    .venv/bin/python -m bench.batching [--callers 32] [--seconds 10]

Starts two real servingd processes on loopback, one without and one with `--enable_batching`,
and drives them in turn, for a few rounds, with N concurrent gRPC callers (one asyncio client,
one single-row Predict after another per caller) for a fixed time after a short warm-up.
Prints requests per second and median latency per run, and the ratio of the median
throughputs; then the same callers in process, on the model without gRPC (what batching gains
once the per-request protocol cost is out of the way). Client and server share the machine;
compare ratios, not absolute numbers, across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from servingd.batching import BatchingOptions, BatchingSession, read_batching_parameters
from servingd.protos.tensorflow.core.framework import types_pb2
from servingd.protos.tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from servingd.servables.onnx import OnnxLoader, OnnxServable, SessionConfig
from servingd.testing.models import mlp, write_version

MODEL = "mlp"
INPUT_WIDTH = 256  # mlp()'s first layer
START_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(base: Path, extra: list[str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "servingd.main",
        f"--port={port}",
        "--host=127.0.0.1",
        f"--model_name={MODEL}",
        f"--model_base_path={base}",
        "--grpc_max_threads=256",  # room for every caller in both runs
        "--log_level=WARNING",
        *extra,
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    return process, port


def wait_available(
    process: subprocess.Popen[bytes], port: int, log: Path, model: str = MODEL
) -> None:
    """Until `model` has a version AVAILABLE (bounded; exits if the server does)."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)  # type: ignore[no-untyped-call]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"servingd exited:\n{log.read_text(errors='replace')}")
            try:
                response = stub.GetModelStatus(request, timeout=2)
                if any(s.state == s.AVAILABLE for s in response.model_version_status):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise SystemExit(f"{model} not available after {START_TIMEOUT_SECONDS} s")


def predict_request(rng: np.random.Generator) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    tensor = request.inputs["x"]
    tensor.dtype = types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add().size = 1
    tensor.tensor_shape.dim.add().size = INPUT_WIDTH
    tensor.tensor_content = rng.standard_normal((1, INPUT_WIDTH), dtype=np.float32).tobytes()
    return request


async def drive(port: int, callers: int, warmup_s: float, measure_s: float) -> Result:
    rng = np.random.default_rng(0)
    requests = [predict_request(rng) for _ in range(64)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)  # type: ignore[no-untyped-call]
        start = time.monotonic()
        measure_from, measure_to = start + warmup_s, start + warmup_s + measure_s
        latencies: list[float] = []
        counted = 0

        async def caller(index: int) -> None:
            nonlocal counted
            i = index
            while (now := time.monotonic()) < measure_to:
                await stub.Predict(requests[i % len(requests)], timeout=30)
                done = time.monotonic()
                if now >= measure_from:
                    counted += 1
                    latencies.append((done - now) * 1000)
                i += callers

        await asyncio.gather(*(caller(i) for i in range(callers)))
    return Result(counted, measure_s, latencies)


async def drive_in_process(
    run: Callable[[], Awaitable[object]], callers: int, warmup_s: float, measure_s: float
) -> float:
    """Requests per second of `run` awaited by `callers` coroutines, after a warm-up."""
    start = time.monotonic()
    measure_from, measure_to = start + warmup_s, start + warmup_s + measure_s
    counted = 0

    async def caller() -> None:
        nonlocal counted
        while (now := time.monotonic()) < measure_to:
            await run()
            counted += now >= measure_from

    await asyncio.gather(*(caller() for _ in range(callers)))
    return counted / measure_s


def in_process(version_dir: Path, batching: BatchingOptions, args: argparse.Namespace) -> None:
    """The same callers on the model itself, without gRPC: the executor hand-off that serves
    unbatched requests against the batching session. Shows what batching gains once the
    per-request protocol cost is out of the way."""
    parallelism = args.session_parallelism
    loader = OnnxLoader(str(version_dir), SessionConfig(parallelism, parallelism))
    loader.load()
    servable: OnnxServable = loader.servable()
    x = np.random.default_rng(0).standard_normal((1, INPUT_WIDTH), dtype=np.float32)
    prepared = servable.prepare("", {"x": x})
    session = BatchingSession(batching)
    executor = ThreadPoolExecutor(max(4, 2 * (os.cpu_count() or 1)))  # the server's default

    async def measure() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        off = await drive_in_process(
            lambda: loop.run_in_executor(executor, servable.run, prepared),
            args.callers,
            args.warmup_seconds,
            args.seconds,
        )
        on = await drive_in_process(
            lambda: session.run(servable, prepared), args.callers, args.warmup_seconds, args.seconds
        )
        return off, on

    try:
        off, on = asyncio.run(measure())
    finally:
        session.stop()
        executor.shutdown()
    print(
        f"in process (no gRPC): batching off {off:8.1f} req/s, on {on:8.1f} req/s, "
        f"ratio {on / off:.2f}"
    )


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def main(argv: list[str] | None = None) -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    p = argparse.ArgumentParser(prog="python -m bench.batching", description=__doc__)
    p.add_argument("--callers", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10.0, help="measured time per run")
    p.add_argument("--rounds", type=int, default=3, help="off/on runs each; medians compared")
    p.add_argument("--warmup_seconds", type=float, default=2.0)
    p.add_argument("--max_batch_size", type=int, default=32)
    p.add_argument("--batch_timeout_micros", type=int, default=1000)
    p.add_argument("--num_batch_threads", type=int, default=cpus or 1)
    p.add_argument(
        "--session_parallelism",
        type=int,
        default=0,
        help="--tensorflow_session_parallelism for both runs (0: onnxruntime's default pools)",
    )
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="servingd-bench-") as tmp:
        root = Path(tmp)
        base = root / MODEL
        write_version(base, 1, mlp())
        params = root / "batching.config"
        params.write_text(
            f"max_batch_size {{ value: {args.max_batch_size} }}\n"
            f"batch_timeout_micros {{ value: {args.batch_timeout_micros} }}\n"
            f"max_enqueued_batches {{ value: {max(100, args.callers)} }}\n"
            f"num_batch_threads {{ value: {args.num_batch_threads} }}\n"
        )
        print(
            f"{MODEL} 256-1024-1024-10, 1 row per request, {args.callers} concurrent callers, "
            f"{args.rounds} x {args.seconds:.0f} s measured (after {args.warmup_seconds:.0f} s) "
            f"each, {cpus} CPU(s)"
        )
        print(f"batching parameters: {' '.join(params.read_text().split())}")
        print(f"--tensorflow_session_parallelism={args.session_parallelism} in both runs")
        common = [f"--tensorflow_session_parallelism={args.session_parallelism}"]
        configs = {
            "off": common,
            "on": [*common, "--enable_batching", f"--batching_parameters_file={params}"],
        }
        # Both servers run side by side (an idle one uses no CPU) and are driven in turn,
        # alternating the order, so background load drifting over time hits both alike.
        servers = {
            label: start_server(base, extra, root / f"servingd-{label}.log")
            for label, extra in configs.items()
        }
        try:
            for label, (process, port) in servers.items():
                wait_available(process, port, root / f"servingd-{label}.log")
            results: dict[str, list[Result]] = {label: [] for label in configs}
            for round_index in range(args.rounds):
                order = list(configs) if round_index % 2 == 0 else list(reversed(configs))
                for label in order:
                    port = servers[label][1]
                    result = asyncio.run(
                        drive(port, args.callers, args.warmup_seconds, args.seconds)
                    )
                    results[label].append(result)
                    p50 = statistics.median(result.latencies_ms or [float("nan")])
                    print(
                        f"round {round_index + 1} batching {label:>3}: "
                        f"{result.throughput:8.1f} req/s   p50 {p50:6.2f} ms"
                    )
        finally:
            for process, _port in servers.values():
                stop_server(process)
        medians = {
            label: statistics.median(r.throughput for r in runs) for label, runs in results.items()
        }
        print(f"median batching off: {medians['off']:.1f} req/s, on: {medians['on']:.1f} req/s")
        print(f"ratio on/off: {medians['on'] / medians['off']:.2f}")
        in_process(base / "1", read_batching_parameters(params), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
