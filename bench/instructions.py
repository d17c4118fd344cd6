"""Instructions per request: servingd and the protocol floor under the same h2load load.

    .venv/bin/python -m bench.instructions [--model tiny] [--requests 20000] [--concurrency 16]
        [--flags='--enable_batching ...'] [--rounds 3] [--python-floor]

Throughput on a shared 2-core VM moves by 2x with the neighbours; the user-space instructions
a server process retires per request (`perf stat -e instructions:u -p PID` around an h2load
run of a fixed number of requests) barely move, so this is the figure to rank changes of the
request path by. Prints, per round, servingd's and the floor's instructions per request,
h2load's requests per second (which the neighbours move) and their ratios; the c=16
throughput target of issue 10 needs servingd <= 1.25x the floor's instructions, as both are
bound by one event-loop thread. With `--python-floor`, the same for bench/python_floor.py
(parse and inline run, nothing else): what servingd adds above the least a Python server does.
Needs `perf` (linux-perf) and `h2load`.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc

from bench.processes import ServerProcess, free_port, servingd_args
from bench.workload import MODELS, PREDICT_PATH, build_models, grpc_frame, predict_request
from servingd.protos.tensorflow_serving.apis import predict_pb2


def _h2load(port: int, frame: Path, requests: int, concurrency: int) -> list[str]:
    return [
        "h2load",
        f"--data={frame}",
        "--header=content-type: application/grpc",
        "--header=te: trailers",
        "--max-concurrent-streams=1",
        f"--clients={concurrency}",
        f"--requests={requests}",
        f"http://127.0.0.1:{port}{PREDICT_PATH}",
    ]


def instructions_per_request(
    pid: int, port: int, frame: Path, requests: int, concurrency: int
) -> tuple[float, float]:
    """(user instructions per request of process `pid`, h2load's requests per second)."""
    subprocess.run(_h2load(port, frame, 2000, concurrency), capture_output=True, check=True)
    result = subprocess.run(
        [
            *("perf", "stat", "-x,", "-e", "instructions:u", "-p", str(pid), "--"),
            *_h2load(port, frame, requests, concurrency),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"^(\d+),,instructions", result.stderr, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no instruction count from perf:\n{result.stderr[-2000:]}")
    done = re.search(r"(\d+) succeeded", result.stdout)
    if done is None or int(done.group(1)) != requests:
        raise RuntimeError(f"h2load did not complete every request:\n{result.stdout[-2000:]}")
    rate = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", result.stdout)
    assert rate is not None, result.stdout
    return int(match.group(1)) / requests, float(rate.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions")
    parser.add_argument("--model", default="tiny", choices=sorted(MODELS))
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flags", default="", help="extra servingd flags")
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument(
        "--python-floor", action="store_true", help="also measure bench/python_floor.py"
    )
    args = parser.parse_args()
    model = MODELS[args.model]
    with tempfile.TemporaryDirectory(prefix="servingd-instr-") as tmp:
        root = Path(tmp)
        bases = build_models(root / "models")
        frame = root / "request.grpc"
        frame.write_bytes(grpc_frame(predict_request(model)))
        grpc_port, rest_port = free_port(), free_port()
        flags = [
            f"--model_name={model.name}",
            f"--model_base_path={bases[model.name]}",
            *shlex.split(args.flags),
        ]
        server = ServerProcess(
            "servingd", servingd_args(grpc_port, rest_port, flags), [grpc_port], root / "s.log"
        )
        with server:
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                call = channel.unary_unary(PREDICT_PATH)
                answer = call(frame.read_bytes()[5:], timeout=10)
            response = predict_pb2.PredictResponse.FromString(answer)
            canned = root / "response.pb"  # servingd's answer, which every floor sends back
            canned.write_bytes(answer)
            model_file = bases[model.name] / "1" / "model.onnx"
            floors: list[tuple[str, str, list[str]]] = []  # (label, module, extra arguments)
            if not args.no_floor:
                floors.append(("floor", "bench.protocol_floor", []))
            if args.python_floor:
                floors.append(("python floor", "bench.python_floor", [f"--model={model_file}"]))
            started: list[tuple[str, ServerProcess, int]] = []  # (label, process, port)
            print(f"{model.name}: outputs {list(response.outputs)}; flags {args.flags!r}")
            try:
                for label, module, extra in floors:
                    port = free_port()
                    process = ServerProcess(
                        label,
                        [
                            sys.executable,
                            "-m",
                            module,
                            f"--grpc_port={port}",
                            f"--grpc_response={canned}",
                            *extra,
                        ],
                        [port],
                        root / f"{module}.log",
                    )
                    started.append((label, process.start(), port))
                for round_ in range(args.rounds):
                    ours, our_rate = instructions_per_request(
                        server.pid, grpc_port, frame, args.requests, args.concurrency
                    )
                    line = f"round {round_ + 1}: servingd {ours / 1000:,.0f}k {our_rate:,.0f} req/s"
                    for label, process, port in started:
                        theirs, their_rate = instructions_per_request(
                            process.pid, port, frame, args.requests, args.concurrency
                        )
                        line += (
                            f"  {label} {theirs / 1000:,.0f}k {their_rate:,.0f} req/s"
                            f"  ratio {ours / theirs:.2f}x instructions, "
                            f"{our_rate / their_rate:.2f}x req/s"
                        )
                    print(line, flush=True)
            finally:
                for _, process, _ in started:
                    process.stop()


if __name__ == "__main__":
    main()
