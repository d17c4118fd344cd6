"""Every dtype round-trips through Predict, in both request and both response encodings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from servingd.protos.tensorflow.core.framework import tensor_pb2, types_pb2
from servingd.protos.tensorflow_serving.apis import predict_pb2
from servingd.tensor_codec import to_ndarray
from servingd.testing.models import ECHO_DTYPES, echo, write_version
from tests.integration.server_process import ServerProcess

# numpy dtype name -> (DataType, typed field)
WIRE = {
    "float16": (types_pb2.DT_HALF, "half_val"),
    "float32": (types_pb2.DT_FLOAT, "float_val"),
    "float64": (types_pb2.DT_DOUBLE, "double_val"),
    "int8": (types_pb2.DT_INT8, "int_val"),
    "int16": (types_pb2.DT_INT16, "int_val"),
    "int32": (types_pb2.DT_INT32, "int_val"),
    "int64": (types_pb2.DT_INT64, "int64_val"),
    "uint8": (types_pb2.DT_UINT8, "int_val"),
    "uint16": (types_pb2.DT_UINT16, "int_val"),
    "uint32": (types_pb2.DT_UINT32, "uint32_val"),
    "uint64": (types_pb2.DT_UINT64, "uint64_val"),
    "bool": (types_pb2.DT_BOOL, "bool_val"),
    "string": (types_pb2.DT_STRING, "string_val"),
}


def _start(base: Path, log: Path, *flags: str) -> ServerProcess:
    server = ServerProcess(
        ["--model_name=echo", f"--model_base_path={base}", *flags], log, rest=False
    ).start()
    try:
        server.wait_until_available("echo")
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    """One server answering in typed fields (TF's default), one in tensor_content."""
    tmp = tmp_path_factory.mktemp("dtypes")
    write_version(tmp / "echo", 1, echo())
    started: dict[str, ServerProcess] = {}
    try:
        started["typed"] = _start(tmp / "echo", tmp / "typed.log")
        started["tensor_content"] = _start(
            tmp / "echo", tmp / "content.log", "--enable_serialization_as_tensor_content"
        )
        yield started
    finally:
        for server in started.values():
            server.stop()


def sample(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    count = int(np.prod(shape))
    if dtype == "string":
        # UTF-8 only: onnxruntime's Python API carries strings as str (see test_errors).
        texts = [b"", b"a", "ünï".encode(), "nul\x00日本".encode()]
        return np.array([texts[i % 4] for i in range(count)], dtype=object).reshape(shape)
    np_dtype = np.dtype(dtype)
    if np_dtype == np.bool_:
        return (np.arange(count) % 2 == 0).reshape(shape)
    if np_dtype.kind in "iu":
        info = np.iinfo(np_dtype)
        pattern = [info.min, info.max, 0, 1, 7]
    else:
        pattern = [float(np.finfo(np_dtype).max), -1.5, 0.0, 0.1, float("-inf")]
    return np.array([pattern[i % len(pattern)] for i in range(count)], dtype=np_dtype).reshape(
        shape
    )


def encode(array: np.ndarray, dtype: str, as_tensor_content: bool) -> Any:
    """A TensorProto the way a client builds it (not with servingd's encoder)."""
    tf_dtype, field = WIRE[dtype]
    proto = tensor_pb2.TensorProto(dtype=tf_dtype)
    for size in array.shape:
        proto.tensor_shape.dim.add().size = size
    if dtype == "string":
        proto.string_val.extend(array.ravel().tolist())
    elif as_tensor_content:
        proto.tensor_content = array.astype(array.dtype.newbyteorder("<")).tobytes()
    elif dtype == "float16":
        proto.half_val.extend(array.ravel().view(np.uint16).tolist())
    else:
        getattr(proto, field).extend(array.ravel().tolist())
    return proto


SHAPES = {"scalar": (), "vector": (5,), "matrix": (2, 3), "zero_batch": (0, 3)}


@pytest.mark.parametrize("response_encoding", ["typed", "tensor_content"])
@pytest.mark.parametrize("request_encoding", ["typed", "tensor_content"])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_every_dtype_echoes_exactly(
    servers: dict[str, ServerProcess],
    request_encoding: str,
    response_encoding: str,
    shape: tuple[int, ...],
) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "echo"
    sent = {dtype: sample(dtype, shape) for dtype in ECHO_DTYPES}
    for dtype, array in sent.items():
        request.inputs[f"x_{dtype}"].CopyFrom(
            encode(array, dtype, request_encoding == "tensor_content")
        )

    response = servers[response_encoding].prediction_stub().Predict(request, timeout=30)

    assert sorted(response.outputs) == sorted(f"y_{d}" for d in ECHO_DTYPES)
    for dtype, array in sent.items():
        tensor = response.outputs[f"y_{dtype}"]
        tf_dtype, field = WIRE[dtype]
        assert tensor.dtype == tf_dtype, dtype
        assert [d.size for d in tensor.tensor_shape.dim] == list(shape), dtype
        if dtype == "string":
            # Strings always travel in string_val, which every client decodes.
            assert not tensor.tensor_content
            assert list(tensor.string_val) == array.ravel().tolist()
            continue
        if response_encoding == "tensor_content":
            assert len(getattr(tensor, field)) == 0
            assert tensor.tensor_content == array.astype(array.dtype.newbyteorder("<")).tobytes()
        else:
            assert not tensor.tensor_content
            assert len(getattr(tensor, field)) == array.size, dtype
        received = to_ndarray(tensor)
        assert received.dtype == array.dtype, dtype
        np.testing.assert_array_equal(received, array, err_msg=dtype)


def test_typed_fields_are_filled_with_the_last_value(servers: dict[str, ServerProcess]) -> None:
    """TF's rule: fewer values than the shape needs repeat the last one; none give zeros."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "echo"
    for dtype in ECHO_DTYPES:
        tensor = request.inputs[f"x_{dtype}"]
        tensor.dtype, _field = WIRE[dtype]
        tensor.tensor_shape.dim.add().size = 3
    request.inputs["x_float32"].float_val.extend([1.5, 2.5])
    request.inputs["x_string"].string_val.append(b"s")
    request.inputs["x_int64"].int64_val.append(-4)
    response = servers["typed"].prediction_stub().Predict(request, timeout=30)
    assert list(response.outputs["y_float32"].float_val) == [1.5, 2.5, 2.5]
    assert list(response.outputs["y_string"].string_val) == [b"s", b"s", b"s"]
    assert list(response.outputs["y_int64"].int64_val) == [-4, -4, -4]
    assert list(response.outputs["y_uint8"].int_val) == [0, 0, 0]
    assert list(response.outputs["y_bool"].bool_val) == [False, False, False]


def test_large_typed_float_tensor(servers: dict[str, ServerProcess]) -> None:
    """perf_analyzer's encoding (float_val) for a 100k-value tensor, both ways."""
    values = np.linspace(-1.0, 1.0, 100_000, dtype=np.float32)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "echo"
    for dtype in ECHO_DTYPES:
        request.inputs[f"x_{dtype}"].CopyFrom(encode(sample(dtype, (1,)), dtype, False))
    request.inputs["x_float32"].CopyFrom(encode(values.reshape(100, 1000), "float32", False))
    response = servers["typed"].prediction_stub().Predict(request, timeout=30)
    np.testing.assert_array_equal(to_ndarray(response.outputs["y_float32"]).ravel(), values)
