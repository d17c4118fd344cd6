"""Where one Predict's time goes inside servingd, stage by stage, without the network.

    .venv/bin/python -m bench.request_path [--model tiny] [--encoding tensor_content]

Builds the same objects servingd serves with (ServerCore, Predictor, PredictionService) in
this process and times each stage of the gRPC Predict path on one request, best of several
rounds of many calls (the minimum is the cost without interference, which a shared machine
cannot give for a whole server):

  parse    PredictRequest.FromString (grpc.aio's deserializer; done in request_parsing.py)
  decode   ModelSpec -> ModelRef, TensorProto -> ndarray (tensor_codec.to_ndarray)
  lookup   admission + ServingMap lookup + ServableHandle (Predictor._admitted_handle)
  validate OnnxServable.prepare (the signature checks)
  run      OnnxServable.run: onnxruntime's run and the output arrays
  encode   PredictResponse building (tensor_codec.fill_tensor_proto, model spec)
  serialize PredictResponse.SerializeToString (grpc.aio's serializer)
  servicer the whole PredictionService.Predict coroutine (decode through encode, plus the
           decorators, the placement decision and the awaits), driven by an event loop, with
           the run inline and (as before issue 10) handed to a thread; process CPU or wall
           time, whichever is larger

What grpc.aio itself costs per call (HTTP/2, the Cython call machinery, the loop) is the
protocol floor's server CPU per request, measured by `python -m bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import workload
from servingd.apis.grpc.model_spec import model_ref
from servingd.apis.grpc.prediction_service import PredictionService
from servingd.apis.predictor import Predictor
from servingd.apis.run_placement import RunPlacement
from servingd.config import single_model_config
from servingd.protos.tensorflow_serving.apis import predict_pb2
from servingd.server_core import ServerCore, ServerCoreOptions
from servingd.tensor_codec import fill_tensor_proto, to_ndarray
from servingd.testing.models import write_version


def best_micros(call: Callable[[], Any], calls: int, rounds: int = 7) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.thread_time()
        for _ in range(calls):
            call()
        best = min(best, (time.thread_time() - start) / calls)
    return best * 1e6


def stages(model: workload.Model, encoding: str, calls: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / model.name
        builder = workload.build_models(Path(tmp) / "models")[model.name]
        write_version(base, 1, (builder / "1" / "model.onnx").read_bytes())
        core = ServerCore.create(
            single_model_config(model.name, str(base)),
            ServerCoreOptions(file_system_poll_wait_seconds=-1),
        )
        try:
            return _stages(core, model, encoding, calls)
        finally:
            core.stop()


def _stages(core: ServerCore, model: workload.Model, encoding: str, calls: int) -> dict[str, float]:
    predictor = Predictor(core, None, None, None, RunPlacement())
    service = PredictionService(predictor)
    data = workload.predict_request(model, encoding)
    request = predict_pb2.PredictRequest.FromString(data)
    ref = model_ref(request)
    inputs = {alias: to_ndarray(tensor, alias) for alias, tensor in request.inputs.items()}
    with predictor.handle(ref) as handle:
        servable = handle.servable
    prepared = servable.prepare(ref.signature_name, inputs, request.output_filter)
    outputs = servable.run(prepared)

    def lookup() -> None:
        with predictor._admitted_handle(ref):
            pass

    def encode() -> Any:
        response = predict_pb2.PredictResponse()
        response.model_spec.name = ref.name
        response.model_spec.version.value = 1
        response.model_spec.signature_name = "serving_default"
        for alias, array in outputs.items():
            fill_tensor_proto(response.outputs[alias], array)
        return response

    response = encode()
    result = {
        "parse": best_micros(lambda: predict_pb2.PredictRequest.FromString(data), calls),
        "decode": best_micros(
            lambda: (model_ref(request), {a: to_ndarray(t, a) for a, t in request.inputs.items()}),
            calls,
        ),
        "lookup": best_micros(lookup, calls),
        "validate": best_micros(
            lambda: servable.prepare(ref.signature_name, inputs, request.output_filter), calls
        ),
        "run": best_micros(lambda: servable.run(prepared), calls),
        "encode": best_micros(encode, calls),
        "serialize": best_micros(response.SerializeToString, calls),
    }

    pool = PredictionService(Predictor(core, None, None, None, RunPlacement(0)))

    async def servicer_loop(servicer: PredictionService) -> float:
        for _ in range(100):  # the first runs teach RunPlacement the run's cost
            await servicer.Predict(data, None)  # type: ignore[arg-type]
        best = float("inf")
        for _ in range(7):
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(calls):
                await servicer.Predict(data, None)  # type: ignore[arg-type]
            elapsed = time.perf_counter() - start
            # Pool runs spend CPU on other threads: count the whole process, and the wall
            # time (the hand-off's wake-ups cost latency too); report the larger.
            best = min(best, max(elapsed, time.process_time() - cpu) / calls)
        return best * 1e6

    result["servicer, run inline"] = asyncio.run(servicer_loop(service))
    result["servicer, run on a thread"] = asyncio.run(servicer_loop(pool))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.request_path", description=__doc__)
    parser.add_argument("--model", default="tiny", choices=sorted(workload.MODELS))
    parser.add_argument(
        "--encoding", default="tensor_content", choices=["tensor_content", "float_val"]
    )
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    model = workload.MODELS[args.model]
    for stage, micros in stages(model, args.encoding, args.calls).items():
        print(f"{stage:>26} {micros:8.1f} µs")


if __name__ == "__main__":
    main()
