"""--enable_signature_method_name_check through real servers, over gRPC and REST.

TF's rules (predict_util.cc, classifier.cc, regressor.cc): with the flag, Predict runs
predict, classify and regress signatures and refuses any other method with INTERNAL;
Classify and Regress refuse a signature of another method with INVALID_ARGUMENT (servingd
does so with or without the flag). Every signature servingd derives from an ONNX graph has
one of the three methods, so the refusal itself is shown on an in-process server whose
loaded signature was given a method servingd never writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import text_format

from servingd.protos.tensorflow.core.example import example_pb2
from servingd.protos.tensorflow.core.framework import types_pb2
from servingd.protos.tensorflow_serving.apis import (
    classification_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from servingd.protos.tensorflow_serving.config import model_server_config_pb2
from servingd.server import ServerOptions, build_server
from servingd.testing.models import affine, classify_and_regress, write_version
from servingd.testing.requests import classify_and_regress_predict
from tests.integration.server_process import ServerProcess, free_port

INVALID = grpc.StatusCode.INVALID_ARGUMENT
CLASSIFY_ON_REGRESS = (
    "Expected classification signature method_name to be tensorflow/serving/classify. "
    "Was: tensorflow/serving/regress"
)
REGRESS_ON_CLASSIFY = (
    "Expected regression signature method_name to be tensorflow/serving/regress. "
    "Was: tensorflow/serving/classify"
)
FOREIGN_METHOD = "example/custom/method"
REFUSED = (
    "Expected prediction signature method_name to be one of {tensorflow/serving/predict, "
    f"tensorflow/serving/classify, tensorflow/serving/regress}}. Was: {FOREIGN_METHOD}"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("method_check")
    write_version(tmp / "cr", 1, classify_and_regress())
    process = ServerProcess(
        [
            "--model_name=cr",
            f"--model_base_path={tmp / 'cr'}",
            "--enable_signature_method_name_check",
        ],
        tmp / "servingd.log",
    )
    process.start()
    try:
        process.wait_until_available("cr")
        yield process
    finally:
        process.stop()


def rpc_error(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def rest(port: int, path: str, body: Any) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path, body=json.dumps(body))
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


CR_INSTANCES = [
    {"x": [1.0, 2.5], "k": [1], "lang": "en"},
    {"x": [0.5, -0.5], "k": [3], "lang": "de"},
]
CR_EXAMPLES = [{"x": [1.0, 2.5], "k": 1, "lang": "en"}, {"x": [0.5, -0.5], "k": 3, "lang": "de"}]


def examples_input(input_proto: Any) -> None:
    for row in CR_EXAMPLES:
        example = example_pb2.Example()
        features = example.features.feature
        features["x"].float_list.value.extend(row["x"])  # type: ignore[arg-type]
        features["k"].int64_list.value.append(row["k"])  # type: ignore[arg-type]
        features["lang"].bytes_list.value.append(str(row["lang"]).encode())
        input_proto.example_list.examples.append(example)


def test_predict_runs_classify_and_regress_signatures_over_grpc(server: ServerProcess) -> None:
    stub = server.prediction_stub()

    classify = stub.Predict(classify_and_regress_predict("classify"), timeout=10)
    regress = stub.Predict(classify_and_regress_predict("regress"), timeout=10)

    assert (classify.model_spec.name, classify.model_spec.signature_name) == ("cr", "classify")
    assert sorted(classify.outputs) == ["classes", "scores"]
    assert list(classify.outputs["scores"].float_val) == [2.0, 3.5, 3.5, 2.5]  # x + k
    assert list(classify.outputs["classes"].string_val) == [b"neg", b"pos"] * 2
    assert regress.model_spec.signature_name == "regress"
    assert list(regress.outputs) == ["outputs"]
    assert list(regress.outputs["outputs"].float_val) == [3.5, 0.0]  # (x0 + x1) * k
    assert stub.Predict(classify_and_regress_predict("regress"), timeout=10) == regress


def test_predict_runs_classify_and_regress_signatures_over_rest(server: ServerProcess) -> None:
    path = "/v1/models/cr:predict"

    classify = rest(
        server.rest_port, path, {"signature_name": "classify", "instances": CR_INSTANCES}
    )
    regress = rest(server.rest_port, path, {"signature_name": "regress", "instances": CR_INSTANCES})

    assert classify == (
        200,
        {
            "predictions": [
                {"scores": [2.0, 3.5], "classes": ["neg", "pos"]},
                {"scores": [3.5, 2.5], "classes": ["neg", "pos"]},
            ]
        },
    )
    assert regress == (200, {"predictions": [[3.5], [0.0]]})


def test_classify_and_regress_refuse_the_other_method_over_grpc(server: ServerProcess) -> None:
    stub = server.prediction_stub()
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "cr"
    examples_input(classify.input)
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "cr"
    examples_input(regress.input)

    ok_classes = stub.Classify(classify, timeout=10).result.classifications
    ok_values = stub.Regress(regress, timeout=10).result.regressions
    classify.model_spec.signature_name = "regress"
    regress.model_spec.signature_name = "classify"

    assert [[(c.label, c.score) for c in row.classes] for row in ok_classes] == [
        [("neg", 2.0), ("pos", 3.5)],
        [("neg", 3.5), ("pos", 2.5)],
    ]
    assert [r.value for r in ok_values] == [3.5, 0.0]
    assert rpc_error(lambda: stub.Classify(classify, timeout=10)) == (INVALID, CLASSIFY_ON_REGRESS)
    assert rpc_error(lambda: stub.Regress(regress, timeout=10)) == (INVALID, REGRESS_ON_CLASSIFY)


def test_classify_and_regress_refuse_the_other_method_over_rest(server: ServerProcess) -> None:
    port = server.rest_port

    assert rest(port, "/v1/models/cr:classify", {"examples": CR_EXAMPLES}) == (
        200,
        {"results": [[["neg", 2.0], ["pos", 3.5]], [["neg", 3.5], ["pos", 2.5]]]},
    )
    assert rest(port, "/v1/models/cr:regress", {"examples": CR_EXAMPLES}) == (
        200,
        {"results": [3.5, 0.0]},
    )
    assert rest(
        port, "/v1/models/cr:classify", {"signature_name": "regress", "examples": CR_EXAMPLES}
    ) == (400, {"error": CLASSIFY_ON_REGRESS})
    assert rest(
        port, "/v1/models/cr:regress", {"signature_name": "classify", "examples": CR_EXAMPLES}
    ) == (400, {"error": REGRESS_ON_CLASSIFY})


# ----- the refusal, through build_server's wiring --------------------------------------------


def affine_predict() -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    x = request.inputs["x"]
    x.dtype = types_pb2.DT_FLOAT
    x.tensor_shape.dim.add().size = 2
    x.tensor_shape.dim.add().size = 1
    x.tensor_content = np.array([[1.0], [2.0]], np.float32).tobytes()
    return request


@pytest.mark.parametrize("check", [True, False])
def test_the_flag_reaches_predict_over_grpc_and_rest(tmp_path: Path, check: bool) -> None:
    """An in-process server from build_server(ServerOptions); the loaded serving_default of
    `m` (y = 0.5x + 2) is given FOREIGN_METHOD before any request."""
    write_version(tmp_path / "m", 1, affine(0.5, 2.0))
    config = text_format.Parse(
        f"model_config_list {{ config {{ name: 'm' base_path: '{tmp_path / 'm'}' }} }}",
        model_server_config_pb2.ModelServerConfig(),
    )
    options = ServerOptions(
        model_config=config,
        grpc_port=0,
        rest_api_port=free_port(),
        host="127.0.0.1",
        enable_signature_method_name_check=check,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = build_server(options)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(60)
        assert server.core is not None
        with server.core.servable_handle(server.core.servable_request("m", 1)) as handle:
            servable = handle.servable
            default = servable.signatures["serving_default"]
            servable.signatures = {
                "serving_default": dataclasses.replace(default, method_name=FOREIGN_METHOD)
            }
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)  # type: ignore[no-untyped-call]
            if check:
                # Twice: the second identical request must not find a fast-path plan.
                for _ in range(2):
                    assert rpc_error(lambda: stub.Predict(affine_predict(), timeout=10)) == (
                        grpc.StatusCode.INTERNAL,
                        REFUSED,
                    )
            else:
                for _ in range(2):
                    response = stub.Predict(affine_predict(), timeout=10)
                    assert list(response.outputs["y"].float_val) == [2.5, 3.0]
        body = {"instances": [[1.0], [2.0]]}
        expected = (500, {"error": REFUSED}) if check else (200, {"predictions": [[2.5], [3.0]]})
        assert rest(server.rest_port, "/v1/models/m:predict", body) == expected
        assert rest(server.rest_port, "/v1/models/m:predict", body) == expected
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(1.0), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_an_unknown_log_level_stops_servingd_with_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "servingd.main",
            f"--model_base_path={tmp_path}",
            "--log_level=loud",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "servingd: error: argument --log_level: invalid choice: 'loud' "
        "(choose from 'DEBUG', 'INFO', 'WARNING', 'ERROR')"
    )
