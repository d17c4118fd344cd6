"""Issue 11: the V2 HTTP/REST API of a real servingd process, through tritonclient.http."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from servingd.protos.inference import grpc_service_pb2 as pb
from servingd.protos.inference import grpc_service_pb2_grpc
from tests.integration.server_process import ServerProcess
from tests.integration.v2_server import minus, start_v2_server, stat_counts

MODELS = ("half_plus_two", "two", "types")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_v2_server(tmp_path_factory.mktemp("v2_http"), MODELS)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[Any]:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.rest_port}")
    yield client
    client.close()


def infer_input(name: str, datatype: str, array: np.ndarray, binary: bool) -> Any:
    tensor = httpclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def http(
    server: ServerProcess, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(server.rest_url + path, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def test_health_and_server_metadata(client: Any) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata() == {
        "name": "servingd",
        "version": "0.1.0",
        "extensions": [
            "binary_tensor_data",
            "model_repository",
            "model_configuration",
            "statistics",
        ],
    }


@pytest.mark.parametrize(
    ("name", "version", "ready"),
    [
        ("half_plus_two", "", True),
        ("half_plus_two", "1", True),
        ("half_plus_two", "stable", True),
        ("half_plus_two", "3", False),
        ("nope", "", False),
    ],
)
def test_model_ready(client: Any, name: str, version: str, ready: bool) -> None:
    assert client.is_model_ready(name, version) is ready


def test_model_metadata_names_datatypes_and_dynamic_shapes(client: Any) -> None:
    assert client.get_model_metadata("half_plus_two") == {
        "name": "half_plus_two",
        "versions": ["1", "2"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
    }
    assert client.get_model_metadata("half_plus_two", "1")["versions"] == ["1"]
    two = client.get_model_metadata("two")
    assert (two["inputs"], two["outputs"]) == (
        [
            {"name": "a", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "b", "datatype": "INT64", "shape": [-1]},
        ],
        [
            {"name": "doubled", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "next", "datatype": "INT64", "shape": [-1]},
        ],
    )
    types = client.get_model_metadata("types")
    assert [(t["name"], t["datatype"], t["shape"]) for t in types["inputs"]] == [
        ("x_string", "BYTES", []),  # unknown rank
        ("x_bool", "BOOL", []),
        ("x_float16", "FP16", []),
        ("x_float64", "FP64", []),
        ("x_int8", "INT8", []),
        ("x_uint64", "UINT64", []),
    ]


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize(
    ("version", "served", "offset"),
    [("", "2", 3.0), ("1", "1", 2.0), ("2", "2", 3.0), ("stable", "1", 2.0)],
)
def test_infer_single_input_selects_the_version(
    client: Any, binary: bool, version: str, served: str, offset: float
) -> None:
    x = np.array([[1.0], [2.0], [5.0]], np.float32)
    outputs = [httpclient.InferRequestedOutput("y", binary_data=binary)]
    result = client.infer(
        "half_plus_two", [infer_input("x", "FP32", x, binary)], version, outputs=outputs
    )
    np.testing.assert_array_equal(result.as_numpy("y"), 0.5 * x + offset)
    response = result.get_response()
    assert (response["model_name"], response["model_version"]) == ("half_plus_two", served)
    assert ("parameters" in response["outputs"][0]) is binary


def test_infer_multi_input_mixes_binary_and_json(client: Any) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([41, -1], np.int64)
    inputs = [infer_input("a", "FP32", a, True), infer_input("b", "INT64", b, False)]
    outputs = [
        httpclient.InferRequestedOutput("next", binary_data=False),
        httpclient.InferRequestedOutput("doubled", binary_data=True),
    ]
    result = client.infer("two", inputs, outputs=outputs, request_id="req-1")
    response = result.get_response()
    assert response["id"] == "req-1"
    assert [(o["name"], o["datatype"], o["shape"]) for o in response["outputs"]] == [
        ("next", "INT64", [2]),
        ("doubled", "FP32", [2, 3]),
    ]
    assert response["outputs"][0]["data"] == [42, 0]
    np.testing.assert_array_equal(result.as_numpy("doubled"), 2 * a)
    # No outputs named: tritonclient asks for every output in binary.
    every = client.infer("two", inputs)
    np.testing.assert_array_equal(every.as_numpy("next"), b + 1)
    np.testing.assert_array_equal(every.as_numpy("doubled"), 2 * a)


@pytest.mark.parametrize("binary", [True, False])
def test_infer_every_datatype_family(client: Any, binary: bool) -> None:
    arrays = {
        "string": ("BYTES", np.array([["h\u00e9".encode(), b""], [b"b", b"c"]], dtype=object)),
        "bool": ("BOOL", np.array([True, False, True])),
        "float16": ("FP16", np.array([1.5, -2.0, 65504.0], np.float16)),
        "float64": ("FP64", np.array([[0.1, -1e300]], np.float64)),
        "int8": ("INT8", np.array([-128, 127], np.int8)),
        "uint64": ("UINT64", np.array([2**64 - 1, 0], np.uint64)),
    }
    inputs = [infer_input(f"x_{k}", dt, arr, binary) for k, (dt, arr) in arrays.items()]
    outputs = [httpclient.InferRequestedOutput(f"y_{k}", binary_data=binary) for k in arrays]
    result = client.infer("types", inputs, outputs=outputs)
    for key, (_datatype, array) in arrays.items():
        got = result.as_numpy(f"y_{key}")
        if key == "string" and not binary:
            got = np.vectorize(lambda s: s.encode() if isinstance(s, str) else s, otypes=[object])(
                got
            )
        assert got.dtype == array.dtype, key
        np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize(
    ("model", "version", "tensor", "status", "message"),
    [
        ("nope", "", ("x", "FP32", [[1.0]]), "404", "Servable not found for request: Latest(nope)"),
        (
            "half_plus_two",
            "7",
            ("x", "FP32", [[1.0]]),
            "404",
            "Servable not found for request: Specific(half_plus_two, 7)",
        ),
        (
            "half_plus_two",
            "beta",
            ("x", "FP32", [[1.0]]),
            "400",
            "Unrecognized servable version label: beta",
        ),
        (
            "half_plus_two",
            "",
            ("x", "INT64", [[1]]),
            "400",
            "Expects input 'x' to be float but int64 is provided",
        ),
        (
            "half_plus_two",
            "",
            ("x", "FP32", [[1.0, 2.0]]),
            "400",
            "input 'x' has shape [1, 2] but the signature expects [-1, 1] (-1 = any size)",
        ),
        (
            "half_plus_two",
            "",
            ("z", "FP32", [[1.0]]),
            "400",
            "Signature input alias: x(feed name: x) not found in request",
        ),
    ],
)
def test_infer_errors(
    client: Any, model: str, version: str, tensor: tuple[str, str, Any], status: str, message: str
) -> None:
    name, datatype, values = tensor
    array = np.array(values, dtype={"FP32": np.float32, "INT64": np.int64}[datatype])
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, [infer_input(name, datatype, array, True)], version)
    assert info.value.status() == status
    assert info.value.message().startswith(message), info.value.message()


def test_invalid_datatype_and_bad_data_over_plain_http(server: ServerProcess) -> None:
    def infer(tensor: dict[str, Any]) -> tuple[int, Any]:
        body = json.dumps({"inputs": [tensor]}).encode()
        status, headers, payload = http(server, "POST", "/v2/models/half_plus_two/infer", body)
        assert headers["Content-Type"].startswith("application/json")
        return status, json.loads(payload)

    assert infer({"name": "x", "datatype": "FLOAT", "shape": [1, 1], "data": [1]})[1]["error"] == (
        "tensor 'x' has invalid datatype 'FLOAT'; expected one of BOOL, UINT8, UINT16, UINT32, "
        "UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES"
    )
    assert infer({"name": "x", "datatype": "FP32", "shape": [2, 1], "data": [1]}) == (
        400,
        {"error": "tensor 'x' has 1 values in 'data' but shape [2, 1] holds 2"},
    )
    assert infer({"name": "x", "datatype": "FP32", "shape": [1, 1], "data": ["a"]})[0] == 400


def test_plain_http_answers(server: ServerProcess) -> None:
    assert http(server, "GET", "/v2/health/live")[::2] == (200, b"")
    assert http(server, "GET", "/v2/health/ready")[::2] == (200, b"")
    assert http(server, "GET", "/v2/models/half_plus_two/ready")[::2] == (200, b"")
    status, _headers, body = http(server, "GET", "/v2/models/nope/ready")
    assert (status, json.loads(body)) == (
        404,
        {"error": "Servable not found for request: Latest(nope)"},
    )
    status, _headers, body = http(server, "GET", "/v2/systemsharedmemory/status")
    assert (status, json.loads(body)) == (
        404,
        {"error": "No V2 endpoint for GET /v2/systemsharedmemory/status"},
    )
    # The binary extension's answer: JSON, then raw bytes; the header says where they split.
    header = json.dumps(
        {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [4.0]}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    status, headers, body = http(
        server, "POST", "/v2/models/half_plus_two/versions/1/infer", header
    )
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    split = int(headers["Inference-Header-Content-Length"])
    assert json.loads(body[:split])["outputs"] == [
        {"name": "y", "datatype": "FP32", "shape": [1, 1], "parameters": {"binary_data_size": 4}}
    ]
    assert np.frombuffer(body[split:], "<f4").tolist() == [4.0]
    # The TF Serving API still answers on the same port.
    status, _headers, body = http(server, "GET", "/v1/models/half_plus_two/versions/2")
    assert status == 200 and json.loads(body)["model_version_status"][0]["state"] == "AVAILABLE"


def test_model_config(client: Any, server: ServerProcess) -> None:
    # Triton's JSON: every field, 64-bit integers as numbers.
    assert client.get_model_config("two") == {
        "name": "two",
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": 0,
        "input": [
            {"name": "a", "data_type": "TYPE_FP32", "dims": [-1, 3]},
            {"name": "b", "data_type": "TYPE_INT64", "dims": [-1]},
        ],
        "output": [
            {"name": "doubled", "data_type": "TYPE_FP32", "dims": [-1, 3]},
            {"name": "next", "data_type": "TYPE_INT64", "dims": [-1]},
        ],
    }
    v1 = client.get_model_config("half_plus_two", "1")
    assert (v1["version_policy"], v1["input"]) == (
        {"all": {}},
        [{"name": "x", "data_type": "TYPE_FP32", "dims": [-1, 1]}],
    )
    types = client.get_model_config("types")
    assert [(i["name"], i["data_type"], i["dims"]) for i in types["input"]][:2] == [
        ("x_string", "TYPE_STRING", []),
        ("x_bool", "TYPE_BOOL", []),
    ]
    status, _headers, body = http(server, "GET", "/v2/models/half_plus_two/versions/1/config")
    assert (status, body) == (200, json.dumps(v1, separators=(",", ":")).encode())


@pytest.mark.parametrize("endpoint", ["config", "stats"])
@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/v2/models/nope", 404, "Servable not found for request: Latest(nope)"),
        ("/v2/models/two/versions/3", 404, "Servable not found for request: Specific(two, 3)"),
        ("/v2/models/two/versions/beta", 400, "Unrecognized servable version label: beta"),
    ],
)
def test_config_and_statistics_errors_are_model_metadatas(
    server: ServerProcess, endpoint: str, path: str, status: int, message: str
) -> None:
    got, _headers, body = http(server, "GET", f"{path}/{endpoint}")
    assert (got, json.loads(body)) == (status, {"error": message})


def test_statistics_count_rest_and_grpc_infers_together(client: Any, server: ServerProcess) -> None:
    before = stat_counts(client.get_inference_statistics("two"))[("two", "1")]
    a = np.ones((2, 3), np.float32)
    b = np.array([1, 2], np.int64)
    for binary in (True, False):
        inputs = [infer_input("a", "FP32", a, binary), infer_input("b", "INT64", b, binary)]
        client.infer("two", inputs)
    with pytest.raises(InferenceServerException):  # `b` has the wrong datatype
        client.infer("two", [infer_input("a", "FP32", a, True), infer_input("b", "FP32", a, True)])
    request = pb.ModelInferRequest(model_name="two")
    request.inputs.add(name="a", datatype="FP32", shape=[2, 3])
    request.inputs.add(name="b", datatype="INT64", shape=[2])
    request.raw_input_contents.extend([a.tobytes(), b.tobytes()])
    grpc_service_pb2_grpc.GRPCInferenceServiceStub(server.channel()).ModelInfer(request, timeout=10)
    after = client.get_inference_statistics("two")
    assert minus(stat_counts(after)[("two", "1")], before) == {
        "inference_count": 3,
        "execution_count": 3,
        "success": 3,
        "fail": 1,
        "queue": 3,
        "compute_input": 3,
        "compute_infer": 3,
        "compute_output": 3,
    }
    (entry,) = after["model_stats"]
    # Every field Triton's JSON has (perf_analyzer -i http reads them all), numbers as numbers.
    assert list(entry) == [
        "name",
        "version",
        "last_inference",
        "inference_count",
        "execution_count",
        "inference_stats",
        "batch_stats",
    ]
    assert list(entry["inference_stats"]) == [
        "success",
        "fail",
        "queue",
        "compute_input",
        "compute_infer",
        "compute_output",
        "cache_hit",
        "cache_miss",
    ]
    assert entry["inference_stats"]["cache_hit"] == {"count": 0, "ns": 0}
    assert entry["last_inference"] > 0 and entry["inference_stats"]["success"]["ns"] > 0
    assert [(s["batch_size"], s["compute_infer"]["count"]) for s in entry["batch_stats"]] == [
        (1, entry["execution_count"])
    ]


def test_statistics_of_every_model_and_of_one_version(client: Any, server: ServerProcess) -> None:
    assert list(stat_counts(client.get_inference_statistics())) == [
        ("half_plus_two", "1"),
        ("half_plus_two", "2"),
        ("two", "1"),
        ("types", "1"),
    ]
    status, _headers, body = http(server, "GET", "/v2/models/half_plus_two/versions/stable/stats")
    assert status == 200
    assert [(s["name"], s["version"]) for s in json.loads(body)["model_stats"]] == [
        ("half_plus_two", "1")
    ]


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("v2_http_batching")
    params = root / "batching.config"
    params.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 200 }\n")
    server = start_v2_server(
        root, ("two", "types"), "--enable_batching", f"--batching_parameters_file={params}"
    )
    yield server
    server.stop()


def test_batched_models_config_and_count_rows(batching_server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{batching_server.rest_port}")
    try:
        config = client.get_model_config("two")
        # The first dimension is the batch: left out of dims, as in Triton.
        assert (config["max_batch_size"], config["dynamic_batching"]) == (
            8,
            {"max_queue_delay_microseconds": 200},
        )
        assert [(i["name"], i["dims"]) for i in config["input"] + config["output"]] == [
            ("a", [3]),
            ("b", []),
            ("doubled", [3]),
            ("next", []),
        ]
        # Unknown rank has no batch dimension to batch on.
        types = client.get_model_config("types")
        assert types["max_batch_size"] == 0 and "dynamic_batching" not in types
        before_stats = client.get_inference_statistics("two")
        before = stat_counts(before_stats)[("two", "1")]
        for rows in (3, 1):
            a = np.ones((rows, 3), np.float32)
            b = np.zeros(rows, np.int64)
            client.infer(
                "two", [infer_input("a", "FP32", a, True), infer_input("b", "INT64", b, True)]
            )
        after = client.get_inference_statistics("two")
        moved = minus(stat_counts(after)[("two", "1")], before)
        assert (moved["inference_count"], moved["execution_count"]) == (4, 2)
        sizes = [
            (s["batch_size"], s["compute_infer"]["count"])
            for s in after["model_stats"][0]["batch_stats"]
        ]
        assert sizes == [(1, 1), (3, 1)]
        # Each request came alone, under max_batch_size: its batch waited out the 200 µs
        # batch_timeout_micros before it ran, and that wait is queue time.
        queue_ns = [
            int(stats["model_stats"][0]["inference_stats"]["queue"]["ns"])
            for stats in (before_stats, after)
        ]
        assert queue_ns[1] - queue_ns[0] >= 2 * 200_000
    finally:
        client.close()
