"""The Python floor: the least a Python gRPC server must do per Predict and still run the model.

    python -m bench.python_floor --grpc_port P --model M.onnx --grpc_response F

A bare grpc.aio server, like the protocol floor, whose `Predict` also parses the request with
protobuf, reads each input's `tensor_content` as an array and runs the model with onnxruntime
inline on the event loop (the compiled session's `run`, servingd's session options: default
intra-op threads, no spinning). It answers with the canned PredictResponse bytes servingd
sends, and checks, looks up, counts and encodes nothing. What servingd costs above this floor
is its own Python; what this floor costs above the protocol floor is the parse and the run
(bench/README.md, "The third round").
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort

from bench.protocol_floor import start_grpc, until_signalled
from servingd.protos.tensorflow_serving.apis import predict_pb2


async def serve(args: argparse.Namespace) -> None:
    grpc_response = Path(args.grpc_response).read_bytes()
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    run = session._sess.run  # as OnnxServable.run_graph
    output_names = [output.name for output in session.get_outputs()]
    parse = predict_pb2.PredictRequest.FromString

    async def predict(request_bytes: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        request = parse(request_bytes)
        feeds = {}
        for name, tensor in request.inputs.items():
            shape = [dim.size for dim in tensor.tensor_shape.dim]
            feeds[name] = np.frombuffer(tensor.tensor_content, np.float32).reshape(shape)
        run(output_names, feeds, None)
        return grpc_response

    server = await start_grpc(args.grpc_port, predict)
    await until_signalled()
    await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.python_floor")
    parser.add_argument("--grpc_port", type=int, required=True)
    parser.add_argument("--model", required=True, help="the model.onnx servingd serves")
    parser.add_argument("--grpc_response", required=True)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
