"""`make bench`: servingd against its compute and protocol floors, one run, one table.

    .venv/bin/python -m bench [--quick] [--repeat N] [--only grpc,rest,...] [--no-results]

Builds the models (bench/models/), installs the load generators if missing (bench/setup.sh),
then, section by section: the compute floor (onnxruntime in-process), the protocol floor (a
bare grpc.aio server answering canned bytes) and servingd as a real process, driven by h2load
(gRPC), wrk (REST) and perf_analyzer (TF Serving mode) at each concurrency. Prints every
figure with its ratio to the floors and each target of issue 10 with pass/fail, and writes
the tables and the machine into bench/RESULTS.md between its markers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np

from bench import compute_floor, lifecycle, loadgen, workload
from bench.processes import ServerProcess, free_port, servingd_args
from bench.report import Series, cpu_jiffies, machine, series_table, targets, write_results
from bench.tools import INSTALL_HELP, Tools, ensure_tools
from servingd.protos.tensorflow_serving.apis import predict_pb2

HERE = Path(__file__).parent
# The key and title of servingd --enable_batching on mlp, in the gRPC section or on its own.
BATCHED_SERIES = ("grpc/mlp/batching", "mlp gRPC: servingd --enable_batching")
# (series key, title, one point's measurement at a concurrency)
Contender = tuple[str, str, Callable[[int], loadgen.Point]]
SECTIONS = (
    "compute",
    "grpc",
    "batching",
    "rest",
    "perf_analyzer",
    "encoding",
    "workers",
    "lifecycle",
)
# batch_timeout_micros 1000: the low end of the 1-10 ms that TF Serving's batching guide
# suggests trying after 0. At 0 a batch holds only what arrived while the previous one ran:
# ~1 request at mlp c=16, so batching cost more than it saved (bench/README.md, "Batching").
BATCHING_PARAMETERS = (
    "max_batch_size {{ value: 64 }}\n"
    "batch_timeout_micros {{ value: {timeout} }}\n"
    "max_enqueued_batches {{ value: 1000 }}\n"
    "num_batch_threads {{ value: 2 }}\n"
)


class Bench:
    def __init__(self, args: argparse.Namespace, tools: Tools, work: Path) -> None:
        self.args = args
        self.tools = tools
        self.work = work
        self.series: dict[str, Series] = {}
        self.bases = workload.build_models(HERE / "models")
        self.expected = {
            name: compute_floor.outputs(self.model_file(name), workload.inputs(model))
            for name, model in workload.MODELS.items()
        }

    def model_file(self, name: str) -> Path:
        return self.bases[name] / "1" / "model.onnx"

    def file(self, name: str, data: bytes) -> Path:
        path = self.work / name
        path.write_bytes(data)
        return path

    def each_point(
        self,
        key: str,
        title: str,
        measure: Callable[[int], loadgen.Point],
        concurrency: list[int] | None = None,
    ) -> Series:
        return self.side_by_side([(key, title, measure)], concurrency)[0]

    def side_by_side(
        self, contenders: list[Contender], concurrency: list[int] | None = None
    ) -> list[Series]:
        """Every point of every contender, the contenders taking turns at each point (the
        order reversed on every other repeat): on a shared VM whose speed drifts over
        minutes, a floor and servingd measured seconds apart see the same machine, where a
        floor measured first, minutes before, does not."""
        series = [self.series.setdefault(key, Series(title)) for key, title, _ in contenders]
        for c in concurrency or self.args.concurrency:
            for round_ in range(self.args.repeat):
                order = list(zip(contenders, series, strict=True))
                for (_, title, measure), found in order[:: -1 if round_ % 2 else 1]:
                    point = measure(c)
                    found.add(point)
                    print(
                        f"  {title:<44} c={c:<3} {point.throughput:9,.0f} req/s  p50 "
                        f"{point.p50_ms:7.2f} ms  p99 {point.p99_ms:7.2f} ms  "
                        f"errors {point.errors}",
                        flush=True,
                    )
        return series

    @contextlib.contextmanager
    def servingd(self, name: str, flags: list[str], rest: bool = True) -> Iterator[ServerProcess]:
        grpc_port, rest_port = free_port(), free_port() if rest else 0
        ports = [grpc_port, rest_port] if rest else [grpc_port]
        with ServerProcess(
            name, servingd_args(grpc_port, rest_port, flags), ports, self.work / f"{name}.log"
        ) as server:
            yield server

    def all_models_config(self) -> str:
        path = self.work / "models.config"
        path.write_text(workload.model_config(self.bases))
        return f"--model_config_file={path}"

    def check_grpc(self, port: int, model: workload.Model, request: bytes) -> int:
        """One Predict from Python before the load: the answer must be the model's. Returns
        the response's frame size, which h2load's byte count is checked against."""
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            answer = channel.unary_unary(workload.PREDICT_PATH)(request, timeout=30)
        response = predict_pb2.PredictResponse.FromString(answer)
        y = response.outputs["y"]
        got = np.asarray(y.float_val, dtype=np.float32).reshape(
            [d.size for d in y.tensor_shape.dim]
        )
        want = compute_floor.outputs(self.model_file(model.name), workload.inputs(model))["y"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        return len(workload.grpc_frame(answer))

    def h2load_measure(
        self, server: ServerProcess, model: workload.Model, request: bytes
    ) -> Callable[[int], loadgen.Point]:
        """h2load points of `request` against `server`, whose answer is checked first."""
        port = server.ports[0]
        response_bytes = self.check_grpc(port, model, request)
        frame = self.file(f"{model.name}-{len(request)}.frame", workload.grpc_frame(request))
        assert self.tools.h2load is not None
        h2load = self.tools.h2load
        return lambda c: loadgen.h2load(
            h2load, port, frame, c, self.args.seconds, server.cpu_seconds, response_bytes
        )

    def h2load_series(
        self,
        key: str,
        title: str,
        server: ServerProcess,
        model: workload.Model,
        request: bytes,
        concurrency: list[int] | None = None,
    ) -> Series:
        series = self.each_point(
            key, title, self.h2load_measure(server, model, request), concurrency
        )
        series.rss_bytes = server.rss_bytes()
        return series

    # ----- sections --------------------------------------------------------------------------

    def compute(self) -> None:
        print("compute floor: onnxruntime in-process, same model file and input")
        for name, model in workload.MODELS.items():
            x = workload.inputs(model)
            self.each_point(
                f"compute/{name}",
                f"{name}: compute floor",
                lambda c, name=name, x=x: compute_floor.measure(
                    self.model_file(name), x, c, self.args.seconds
                ),
            )

    @contextlib.contextmanager
    def floor(self, model: workload.Model) -> Iterator[ServerProcess]:
        """The protocol floor for `model`: ports[0] answers gRPC, ports[1] REST."""
        outputs = self.expected[model.name]
        grpc_port, rest_port = free_port(), free_port()
        response = self.file(f"{model.name}.response", workload.predict_response(model, outputs))
        rest_response = self.file(f"{model.name}.json", workload.rest_response(outputs))
        args = [
            sys.executable, "-m", "bench.protocol_floor",
            f"--grpc_port={grpc_port}", f"--grpc_response={response}",
            f"--rest_port={rest_port}", f"--rest_response={rest_response}",
        ]  # fmt: skip
        log = self.work / f"floor-{model.name}.log"
        with ServerProcess(f"floor-{model.name}", args, [grpc_port, rest_port], log) as floor:
            yield floor

    def grpc(self) -> None:
        print(
            "gRPC Predict (h2load): the protocol floor and servingd unbatched serving every "
            "model, side by side; on mlp also servingd --enable_batching"
        )
        batching = "batching" in self.args.only
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(self.servingd("servingd", [self.all_models_config()]))
            batched = stack.enter_context(self.batched_servingd()) if batching else None
            for name, model in workload.MODELS.items():
                request = workload.predict_request(model)
                floor = stack.enter_context(self.floor(model))
                contenders: list[Contender] = [
                    (f"grpc/{name}/floor", f"{name} gRPC: protocol floor",
                     self.h2load_measure(floor, model, request)),
                    (f"grpc/{name}/servingd", f"{name} gRPC: servingd",
                     self.h2load_measure(server, model, request)),
                ]  # fmt: skip
                with_batching = batched if model is workload.MLP else None
                if with_batching is not None:
                    measure = self.h2load_measure(with_batching, model, request)
                    contenders.append((*BATCHED_SERIES, measure))
                self.side_by_side(contenders)
                floor.stop()  # idle, but one process less on two cores
                self.series[f"grpc/{name}/servingd"].rss_bytes = server.rss_bytes()
                if with_batching is not None:
                    self.series[BATCHED_SERIES[0]].rss_bytes = with_batching.rss_bytes()

    @contextlib.contextmanager
    def batched_servingd(self) -> Iterator[ServerProcess]:
        params = self.work / "batching.config"
        params.write_text(BATCHING_PARAMETERS.format(timeout=self.args.batch_timeout_micros))
        flags = [
            self.all_models_config(),
            "--enable_batching",
            f"--batching_parameters_file={params}",
        ]
        with self.servingd("servingd-batching", flags, rest=False) as server:
            yield server

    def batching(self) -> None:
        if "grpc" in self.args.only:
            return  # measured in the gRPC section, beside the floor and unbatched servingd
        print("gRPC Predict on mlp with --enable_batching")
        with self.batched_servingd() as server:
            self.h2load_series(
                *BATCHED_SERIES, server, workload.MLP,
                workload.predict_request(workload.MLP),
            )  # fmt: skip

    def rest_measure(
        self, server: ServerProcess, port: int, model: workload.Model
    ) -> Callable[[int], loadgen.Point]:
        """wrk points against `server`'s REST port, whose answer is checked first."""
        body = workload.rest_body(model)
        url = f"http://127.0.0.1:{port}/v1/models/{model.name}:predict"
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            predictions = np.asarray(json.loads(answer.read())["predictions"])
        np.testing.assert_allclose(predictions, self.expected[model.name]["y"], rtol=1e-5)
        assert self.tools.wrk is not None
        wrk = self.tools.wrk
        return lambda c: loadgen.wrk(wrk, url, body, c, self.args.seconds, server.cpu_seconds)

    def rest(self) -> None:
        print("REST :predict (wrk) on tiny: an aiohttp floor and servingd, side by side")
        tiny = workload.TINY
        with (
            self.floor(tiny) as floor,
            self.servingd("servingd-rest", [self.all_models_config()]) as server,
        ):
            self.side_by_side(
                [
                    ("rest/tiny/floor", "tiny REST: protocol floor",
                     self.rest_measure(floor, floor.ports[1], tiny)),
                    ("rest/tiny/servingd", "tiny REST: servingd",
                     self.rest_measure(server, server.ports[1], tiny)),
                ]
            )  # fmt: skip

    def perf_analyzer(self) -> None:
        print("perf_analyzer --service-kind=tfserving on tiny (typed float_val inputs)")
        assert self.tools.perf_analyzer is not None
        binary = self.tools.perf_analyzer
        with self.servingd("servingd-pa", [self.all_models_config()], rest=False) as server:
            self.each_point(
                "perf_analyzer/tiny",
                "tiny perf_analyzer: servingd",
                lambda c: loadgen.perf_analyzer(
                    binary,
                    server.ports[0],
                    "tiny",
                    "x:1,1",
                    c,
                    self.args.seconds,
                    server.cpu_seconds,
                ),
            )

    def encoding(self) -> None:
        print("256 floats in and out (tiny, 256 rows): typed float_val vs tensor_content requests")
        flags = [self.all_models_config()]
        with self.servingd("servingd-encoding", flags, rest=False) as server:
            for encoding in ("float_val", "tensor_content"):
                self.h2load_series(
                    f"encoding/{encoding}", f"tiny x256 gRPC {encoding}: servingd", server,
                    workload.TINY_256, workload.predict_request(workload.TINY_256, encoding), [16],
                )  # fmt: skip

    def workers(self) -> None:
        print("--workers N: N processes sharing the ports (tiny only)")
        base = self.bases["tiny"]
        for n in self.args.workers:
            flags = ["--model_name=tiny", f"--model_base_path={base}", f"--workers={n}"]
            with self.servingd(f"servingd-workers-{n}", flags) as server:
                self.h2load_series(
                    f"workers/{n}", f"tiny gRPC: servingd --workers={n}", server, workload.TINY,
                    workload.predict_request(workload.TINY),
                )  # fmt: skip

    def lifecycle(self) -> lifecycle.Lifecycle:
        print(f"lifecycle: start time, idle CPU, RSS, {self.args.cycles} load/unload cycles")
        result = lifecycle.measure(self.work, self.args.cycles, self.args.idle_seconds)
        print(
            f"  start -> ports open {', '.join(f'{s:.2f}' for s in result.startup_seconds)} s; "
            f"RSS with tiny {result.rss_tiny_bytes / 2**20:.0f} MiB; idle CPU "
            f"{result.idle_cpu_percent:.2f}% over {result.idle_seconds:.0f} s; RSS "
            f"{result.rss_before_cycles / 2**20:.1f} -> {result.rss_after_cycles / 2**20:.1f} MiB "
            f"({result.rss_growth * 100:+.1f}%; {result.rss_growth_after_warmup * 100:+.1f}% after "
            f"the first {max(1, result.cycles // 10)} cycles)"
        )
        return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--quick", action="store_true", help="2 s points, 100 cycles (development)")
    p.add_argument("--seconds", type=float, help="measured seconds per point (default 10)")
    p.add_argument("--concurrency", default="1,4,16,64", help="comma list")
    p.add_argument("--repeat", type=int, default=1, help="runs per point; the median is reported")
    p.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}"
    )
    p.add_argument(
        "--batch_timeout_micros",
        type=int,
        default=1000,
        help="batch_timeout_micros of servingd --enable_batching on mlp",
    )
    p.add_argument("--workers", default="1,2", help="--workers values to measure")
    p.add_argument("--cycles", type=int, help="load/unload cycles (default 1000)")
    p.add_argument("--idle_seconds", type=float, help="idle CPU sampling time (default 10)")
    p.add_argument("--no-setup", dest="setup", action="store_false", help="do not run setup.sh")
    p.add_argument("--results", default=str(HERE / "RESULTS.md"), help="file to write ('' = none)")
    args = p.parse_args(argv)
    args.seconds = args.seconds or (2.0 if args.quick else 10.0)
    args.cycles = args.cycles if args.cycles is not None else (100 if args.quick else 1000)
    args.idle_seconds = args.idle_seconds or (3.0 if args.quick else 10.0)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.workers = [int(n) for n in args.workers.split(",")]
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tools = ensure_tools(args.setup)
    if tools.missing():
        for name in tools.missing():
            print(
                f"bench: {name} is missing; install it with: {INSTALL_HELP[name]}", file=sys.stderr
            )
        return 2
    load_before, jiffies_before = os.getloadavg(), cpu_jiffies()
    print(f"load average before: {load_before[0]:.2f} (measurements are noisy above ~0.5)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="servingd-bench-") as tmp:
        bench = Bench(args, tools, Path(tmp))
        life = None
        for section in SECTIONS:
            if section in args.only:
                result = getattr(bench, section)()
                if section == "lifecycle":
                    life = result
        lines = render(bench, life, args, load_before, jiffies_before)
    print("\n".join(lines))
    print(f"bench: {time.monotonic() - started:.0f} s")
    if args.results:
        write_results(Path(args.results), lines)
        print(f"bench: wrote {args.results}")
    return 0


def _floors(key: str) -> tuple[str, str]:
    """The protocol and compute floor series a servingd series is compared with."""
    parts = key.split("/")
    if parts[0] in ("grpc", "rest"):
        return f"{parts[0]}/{parts[1]}/floor", f"compute/{parts[1]}"
    if parts[0] in ("perf_analyzer", "workers"):
        return "grpc/tiny/floor", "compute/tiny"
    return "", ""  # encoding: compared with each other only


def render(
    bench: Bench,
    life: lifecycle.Lifecycle | None,
    args: argparse.Namespace,
    load: tuple[float, float, float],
    jiffies: tuple[int, int],
) -> list[str]:
    s = bench.series
    lines = [
        f"`python -m bench {' '.join(sys.argv[1:])}`".replace(" `", "`"),
        f"{args.seconds:g} s per point, {args.repeat} run(s) per point (the median; ± is half "
        "the range), h2load/wrk: one client thread, one stream per connection.",
        "",
        "### Machine",
        *machine(load, jiffies),
        "",
        "### Targets",
        "A target that compares two side-by-side series (servingd and its floor, batching on "
        "and off) is the median of its per-round ratios, both measured in turns, seconds "
        "apart; its range and the rounds that pass show how far the verdict depends on the "
        "minute.",
        "",
        "| target | measured | per round | limit | verdict |",
        "|---|---:|---:|---:|---|",
        *(t.row() for t in targets(s, life)),
        "",
    ]
    if life is not None:
        mib = 2**20
        lines += [
            f"RSS with tiny loaded: {life.rss_tiny_bytes / mib:.0f} MiB. Starts (s): "
            f"{', '.join(f'{x:.2f}' for x in life.startup_seconds)}. Load/unload cycles: RSS "
            f"{life.rss_before_cycles / mib:.1f} MiB before, "
            f"{life.rss_after_warmup_cycles / mib:.1f} after {max(1, life.cycles // 10)}, "
            f"{life.rss_after_cycles / mib:.1f} after {life.cycles}.",
            "",
        ]
    lines += ["### servingd", ""]
    for key, series in s.items():
        if key.endswith("/floor") or key.startswith("compute/"):
            continue
        floor, compute = _floors(key)
        lines += series_table(series, s.get(floor), s.get(compute))
    lines += ["### Floors", ""]
    for key, series in s.items():
        if key.endswith("/floor"):
            lines += series_table(series, None, s.get(_floors(key)[1]))
        elif key.startswith("compute/"):
            lines += series_table(series, None, None)
    return lines


if __name__ == "__main__":
    sys.exit(main())
