"""Issue 11: the V2 gRPC API (inference.GRPCInferenceService) of a real servingd process,
through tritonclient.grpc (in a worker process, see v2_server.py) and servingd's own stubs."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest

from servingd.protos.inference import grpc_service_pb2 as pb
from servingd.protos.inference import grpc_service_pb2_grpc
from tests.integration.server_process import ServerProcess
from tests.integration.v2_server import (
    grpc_health,
    grpc_infer,
    grpc_model_config,
    grpc_model_metadata,
    grpc_statistics,
    minus,
    start_v2_server,
    stat_counts,
    triton_grpc_worker,
)

Call = Callable[..., Any]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_v2_server(
        tmp_path_factory.mktemp("v2_grpc"), ("half_plus_two", "two", "types"), rest=False
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def triton() -> Iterator[Call]:
    with triton_grpc_worker() as call:
        yield call


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Any:
    return grpc_service_pb2_grpc.GRPCInferenceServiceStub(server.channel())


def test_health_readiness_and_server_metadata(server: ServerProcess, triton: Call) -> None:
    models = [("half_plus_two", ""), ("half_plus_two", "1"), ("half_plus_two", "3"), ("nope", "")]
    assert triton(grpc_health, server.grpc_target, models) == {
        "live": True,
        "ready": True,
        "models": [True, True, False, False],
        "metadata": {
            "name": "servingd",
            "version": "0.1.0",
            "extensions": [
                "binary_tensor_data",
                "model_repository",
                "model_configuration",
                "statistics",
            ],
        },
    }


def test_model_metadata(server: ServerProcess, triton: Call) -> None:
    # tritonclient's JSON form: int64 shapes are strings, as protobuf's JSON mapping has them.
    assert triton(grpc_model_metadata, server.grpc_target, "two", "") == {
        "name": "two",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": ["-1", "3"]},
            {"name": "b", "datatype": "INT64", "shape": ["-1"]},
        ],
        "outputs": [
            {"name": "doubled", "datatype": "FP32", "shape": ["-1", "3"]},
            {"name": "next", "datatype": "INT64", "shape": ["-1"]},
        ],
    }
    v1 = triton(grpc_model_metadata, server.grpc_target, "half_plus_two", "1")
    assert v1["versions"] == ["1"]


@pytest.mark.parametrize(
    ("version", "served", "offset"),
    [("", "2", 3.0), ("1", "1", 2.0), ("stable", "1", 2.0)],
)
def test_infer_raw_contents_selects_the_version(
    server: ServerProcess, triton: Call, version: str, served: str, offset: float
) -> None:
    x = np.array([[1.0], [-2.5]], np.float32)
    result = triton(
        grpc_infer, server.grpc_target, "half_plus_two", version, [("x", "FP32", x)], (), "r-9"
    )
    assert (result["model_version"], result["id"]) == (served, "r-9")
    np.testing.assert_array_equal(result["outputs"]["y"], 0.5 * x + offset)


def test_infer_multi_input_and_output_filter(server: ServerProcess, triton: Call) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([9, -3], np.int64)
    inputs = [("a", "FP32", a), ("b", "INT64", b)]
    every = triton(grpc_infer, server.grpc_target, "two", "", inputs)
    assert list(every["outputs"]) == ["doubled", "next"]
    np.testing.assert_array_equal(every["outputs"]["doubled"], 2 * a)
    np.testing.assert_array_equal(every["outputs"]["next"], b + 1)
    only = triton(grpc_infer, server.grpc_target, "two", "", inputs, ["next"])
    assert list(only["outputs"]) == ["next"]


def test_infer_every_datatype_family(server: ServerProcess, triton: Call) -> None:
    arrays = {
        "string": ("BYTES", np.array([["h\u00e9".encode(), b""]], dtype=object)),
        "bool": ("BOOL", np.array([True, False])),
        "float16": ("FP16", np.array([1.5, -65504.0], np.float16)),
        "float64": ("FP64", np.array([0.1], np.float64)),
        "int8": ("INT8", np.array([-128, 127], np.int8)),
        "uint64": ("UINT64", np.array([2**64 - 1], np.uint64)),
    }
    inputs = [(f"x_{key}", dt, array) for key, (dt, array) in arrays.items()]
    result = triton(grpc_infer, server.grpc_target, "types", "", inputs)
    for key, (_datatype, array) in arrays.items():
        got = result["outputs"][f"y_{key}"]
        assert got.dtype == array.dtype, key
        np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize(
    ("model", "version", "tensor", "status", "message"),
    [
        (
            "nope",
            "",
            ("x", "FP32", [[1.0]]),
            "NOT_FOUND",
            "Servable not found for request: Latest(nope)",
        ),
        (
            "half_plus_two",
            "5",
            ("x", "FP32", [[1.0]]),
            "NOT_FOUND",
            "Servable not found for request: Specific(half_plus_two, 5)",
        ),
        (
            "half_plus_two",
            "",
            ("x", "FP64", [[1.0]]),
            "INVALID_ARGUMENT",
            "Expects input 'x' to be float but double is provided",
        ),
        (
            "half_plus_two",
            "",
            ("x", "FP32", [1.0, 2.0]),
            "INVALID_ARGUMENT",
            "input 'x' has shape [2] but the signature expects [-1, 1] (-1 = any size)",
        ),
    ],
)
def test_infer_errors(
    server: ServerProcess,
    triton: Call,
    model: str,
    version: str,
    tensor: tuple[str, str, Any],
    status: str,
    message: str,
) -> None:
    name, datatype, values = tensor
    array = np.array(values, dtype={"FP32": np.float32, "FP64": np.float64}[datatype])
    result = triton(grpc_infer, server.grpc_target, model, version, [(name, datatype, array)])
    assert result["error"] == (f"StatusCode.{status}", message)


def test_typed_contents_over_servingd_stubs(stub: Any) -> None:
    request = pb.ModelInferRequest(model_name="two", model_version="1")
    a = request.inputs.add(name="a", datatype="FP32", shape=[1, 3])
    a.contents.fp32_contents.extend([1.0, 2.5, -3.0])
    b = request.inputs.add(name="b", datatype="INT64", shape=[1])
    b.contents.int64_contents.append(2**40)
    response = stub.ModelInfer(request, timeout=10)
    assert (response.model_name, response.model_version) == ("two", "1")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("doubled", "FP32", [1, 3]),
        ("next", "INT64", [1]),
    ]
    assert list(response.raw_output_contents) == [
        struct.pack("<3f", 2.0, 5.0, -6.0),
        struct.pack("<q", 2**40 + 1),
    ]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda r: r.inputs.add(name="x", datatype="FLOAT", shape=[1, 1]),
            "tensor 'x' has invalid datatype 'FLOAT'; expected one of BOOL, UINT8",
        ),
        (
            lambda r: r.inputs.add(
                name="x", datatype="FP32", shape=[2, 1]
            ).contents.fp32_contents.append(1),
            "tensor 'x' has 1 values in fp32_contents but shape [2, 1] holds 2",
        ),
        (
            lambda r: (
                r.inputs.add(name="x", datatype="FP32", shape=[1, 1]),
                r.raw_input_contents.append(b"\0"),
            ),
            "tensor 'x' has 1 bytes of raw data but shape [1, 1] of FP32 needs 4",
        ),
    ],
)
def test_malformed_tensors_are_invalid_argument(
    stub: Any, build: Callable[[Any], Any], message: str
) -> None:
    request = pb.ModelInferRequest(model_name="half_plus_two")
    build(request)
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(message), info.value.details()


def test_unimplemented_triton_methods_answer_unimplemented(server: ServerProcess) -> None:
    call = server.channel().unary_unary("/inference.GRPCInferenceService/SystemSharedMemoryStatus")
    with pytest.raises(grpc.RpcError) as info:
        call(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_model_config(server: ServerProcess, triton: Call) -> None:
    # tritonclient's JSON leaves out zeros (max_batch_size 0: not batched, full shapes).
    assert triton(grpc_model_config, server.grpc_target, "two", "") == {
        "config": {
            "name": "two",
            "platform": "onnxruntime_onnx",
            "backend": "onnxruntime",
            "version_policy": {"latest": {"num_versions": 1}},
            "input": [
                {"name": "a", "data_type": "TYPE_FP32", "dims": ["-1", "3"]},
                {"name": "b", "data_type": "TYPE_INT64", "dims": ["-1"]},
            ],
            "output": [
                {"name": "doubled", "data_type": "TYPE_FP32", "dims": ["-1", "3"]},
                {"name": "next", "data_type": "TYPE_INT64", "dims": ["-1"]},
            ],
        }
    }
    v1 = triton(grpc_model_config, server.grpc_target, "half_plus_two", "stable")["config"]
    assert (v1["name"], v1["version_policy"]) == ("half_plus_two", {"all": {}})
    # Unknown rank: no dims. BYTES is Triton's TYPE_STRING.
    types = triton(grpc_model_config, server.grpc_target, "types", "")["config"]
    assert [(i["name"], i["data_type"], i.get("dims")) for i in types["input"]] == [
        ("x_string", "TYPE_STRING", None),
        ("x_bool", "TYPE_BOOL", None),
        ("x_float16", "TYPE_FP16", None),
        ("x_float64", "TYPE_FP64", None),
        ("x_int8", "TYPE_INT8", None),
        ("x_uint64", "TYPE_UINT64", None),
    ]


@pytest.mark.parametrize(
    ("model", "version", "status", "message"),
    [
        ("nope", "", "NOT_FOUND", "Servable not found for request: Latest(nope)"),
        ("two", "3", "NOT_FOUND", "Servable not found for request: Specific(two, 3)"),
        ("two", "beta", "INVALID_ARGUMENT", "Unrecognized servable version label: beta"),
    ],
)
@pytest.mark.parametrize("function", [grpc_model_config, grpc_statistics])
def test_config_and_statistics_errors_are_model_metadatas(
    server: ServerProcess,
    triton: Call,
    function: Call,
    model: str,
    version: str,
    status: str,
    message: str,
) -> None:
    assert triton(function, server.grpc_target, model, version) == (
        f"StatusCode.{status}",
        message,
    )


def test_statistics_count_the_infers_sent(server: ServerProcess, triton: Call) -> None:
    target = server.grpc_target
    before = stat_counts(triton(grpc_statistics, target, "half_plus_two"))
    x = [("x", "FP32", np.array([[1.0], [2.0]], np.float32))]
    for version in ("", "2", "", "1", "stable"):
        assert "error" not in triton(grpc_infer, target, "half_plus_two", version, x)
    wrong_shape = [("x", "FP32", np.array([1.0], np.float32))]
    assert "error" in triton(grpc_infer, target, "half_plus_two", "1", wrong_shape)
    after = triton(grpc_statistics, target, "half_plus_two")
    counts = stat_counts(after)
    assert list(counts) == [("half_plus_two", "1"), ("half_plus_two", "2")]
    # Not batched (no --enable_batching): a request is one inference whatever its rows.
    three = dict.fromkeys(("inference_count", "execution_count", "success", "queue"), 3)
    three |= dict.fromkeys(("compute_input", "compute_infer", "compute_output"), 3)
    assert minus(counts[("half_plus_two", "2")], before[("half_plus_two", "2")]) == three
    two = {key: 2 for key in three}
    assert minus(counts[("half_plus_two", "1")], before[("half_plus_two", "1")]) == {
        **two,
        "fail": 1,
    }
    v1 = after["model_stats"][0]
    assert int(v1["last_inference"]) > 0
    assert int(v1["inference_stats"]["success"]["ns"]) > 0
    assert [(b["batch_size"], b["compute_infer"]["count"]) for b in v1["batch_stats"]] == [
        ("1", str(counts[("half_plus_two", "1")][1]))
    ]
    assert triton(grpc_statistics, target, "half_plus_two", "1")["model_stats"] == [v1]


def test_statistics_of_every_model(server: ServerProcess, triton: Call) -> None:
    every = stat_counts(triton(grpc_statistics, server.grpc_target))
    assert list(every) == [
        ("half_plus_two", "1"),
        ("half_plus_two", "2"),
        ("two", "1"),
        ("types", "1"),
    ]
