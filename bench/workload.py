"""The bench's models and the exact bytes each load generator sends and each floor answers."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servingd.protos.tensorflow.core.framework import types_pb2
from servingd.protos.tensorflow_serving.apis import predict_pb2
from servingd.tensor_codec import fill_tensor_proto
from servingd.testing.models import affine, gemm_chain, mlp, write_version

PREDICT_PATH = "/tensorflow.serving.PredictionService/Predict"


@dataclass(frozen=True)
class Model:
    name: str
    rows: int  # rows per request (batch dimension)
    width: int  # floats per row
    about: str

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.width)


TINY = Model("tiny", 1, 1, "y = 0.5x + 2, [N,1]")
MLP = Model("mlp", 1, 256, "256-1024-1024-10 ReLU MLP, seeded")
WIDE = Model("wide", 1, 1024, "96 x (1024x1024 Gemm + Tanh), one shared weight")
# perf_analyzer's encoding question: 256 floats in and out, on a model that costs ~nothing.
TINY_256 = Model("tiny", 256, 1, "tiny with 256 rows: 256 floats in and out")

MODELS = {m.name: m for m in (TINY, MLP, WIDE)}
_BUILDERS = {"tiny": lambda: affine(0.5, 2.0), "mlp": mlp, "wide": lambda: gemm_chain(depth=96)}


def build_models(root: Path) -> dict[str, Path]:
    """`<root>/<name>/1/model.onnx` for every model, rebuilt each run (a second or so), so a
    changed builder never leaves a stale model behind."""
    bases = {}
    for name, builder in _BUILDERS.items():
        base = root / name
        write_version(base, 1, builder())
        bases[name] = base
    return bases


def model_config(bases: dict[str, Path]) -> str:
    """A ModelServerConfig that serves every bench model from one servingd."""
    entries = "".join(
        f"  config {{ name: '{name}' base_path: '{base.resolve()}' model_platform: 'onnx' }}\n"
        for name, base in bases.items()
    )
    return f"model_config_list {{\n{entries}}}\n"


def inputs(model: Model) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.standard_normal(model.shape, dtype=np.float32)


def predict_request(model: Model, encoding: str = "tensor_content") -> bytes:
    """A serialized PredictRequest; `encoding` is "tensor_content" or "float_val" (typed)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model.name
    tensor = request.inputs["x"]
    tensor.dtype = types_pb2.DT_FLOAT
    for size in model.shape:
        tensor.tensor_shape.dim.add().size = size
    x = inputs(model)
    if encoding == "tensor_content":
        tensor.tensor_content = x.astype("<f4").tobytes()
    else:
        tensor.float_val.extend(x.ravel().tolist())
    return bytes(request.SerializeToString())


def predict_response(model: Model, outputs: dict[str, np.ndarray], version: int = 1) -> bytes:
    """The PredictResponse servingd sends for these outputs (typed fields, TF's default)."""
    response = predict_pb2.PredictResponse()
    response.model_spec.name = model.name
    response.model_spec.version.value = version
    response.model_spec.signature_name = "serving_default"
    for alias, array in outputs.items():
        fill_tensor_proto(response.outputs[alias], array)
    return bytes(response.SerializeToString())


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: flag byte 0 (uncompressed), 4-byte big-endian size."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def rest_body(model: Model) -> bytes:
    """TF Serving's row format: {"instances": [[...], ...]}."""
    rows = inputs(model).tolist()
    return json.dumps({"instances": rows}, separators=(",", ":")).encode()


def rest_response(outputs: dict[str, np.ndarray]) -> bytes:
    """The row-format answer for a single-output model: {"predictions": [...]}."""
    (array,) = outputs.values()
    return json.dumps({"predictions": array.tolist()}, separators=(",", ":")).encode()
