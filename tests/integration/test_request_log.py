"""Issue 8: request logging (TF's logging_config) and JSON logs on a real servingd.

Sampled requests are written as PredictionLog records to TFRecord files named from
`filename_prefix`; at rate 1.0 the file holds exactly the successful requests sent, in
order; at rate 0 nothing is written. The server runs with `--log_format=json` and no
monitoring config, so its metrics page is off (404, as in TF Serving).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from servingd.protos.tensorflow.core.framework import types_pb2
from servingd.protos.tensorflow_serving.apis import (
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)
from servingd.servables.tfrecord import read_records
from servingd.tensor_codec import to_ndarray
from servingd.testing.models import affine, classify_and_regress, write_version
from tests.integration.server_process import ServerProcess


def logging_config(prefix: Path, rate: float) -> str:
    return (
        f"logging_config {{ sampling_config {{ sampling_rate: {rate} }} "
        f"log_collector_config {{ type: 'tfrecord' filename_prefix: '{prefix}' }} }}"
    )


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("request_log")


@pytest.fixture(scope="module")
def server(tmp: Path) -> Iterator[ServerProcess]:
    write_version(tmp / "hpt", 1, affine(0.5, 2.0))
    write_version(tmp / "quiet", 1, affine(1.0, 0.0))
    write_version(tmp / "cr", 1, classify_and_regress())
    (tmp / "logs").mkdir()
    config = tmp / "models.config"
    config.write_text(
        "model_config_list {\n"
        f"  config {{ name: 'hpt' base_path: '{tmp / 'hpt'}' "
        f"{logging_config(tmp / 'logs' / 'hpt', 1.0)} }}\n"
        f"  config {{ name: 'quiet' base_path: '{tmp / 'quiet'}' "
        f"{logging_config(tmp / 'logs' / 'quiet', 0.0)} }}\n"
        f"  config {{ name: 'cr' base_path: '{tmp / 'cr'}' "
        f"{logging_config(tmp / 'logs' / 'cr', 1.0)} }}\n"
        "}\n"
    )
    process = ServerProcess(
        [f"--model_config_file={config}", "--log_format=json"], tmp / "servingd.log"
    ).start()
    try:
        for model in ("hpt", "quiet", "cr"):
            process.wait_until_available(model)
        yield process
    finally:
        process.stop()


def predict_request(x: np.ndarray, version: int | None = None) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "hpt"
    if version is not None:
        request.model_spec.version.value = version
    tensor = request.inputs["x"]
    tensor.dtype = types_pb2.DT_FLOAT
    for size in x.shape:
        tensor.tensor_shape.dim.add().size = size
    tensor.float_val.extend(x.ravel().tolist())
    return request


def post(server: ServerProcess, path: str, document: object) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=10)
    try:
        connection.request("POST", path, json.dumps(document).encode())
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def read_logs(tmp: Path, model: str) -> list[Any]:
    (path,) = (tmp / "logs").glob(f"{model}.*.tfrecord")
    return [prediction_log_pb2.PredictionLog.FromString(r) for r in read_records(path)]


def test_rate_one_logs_exactly_the_requests_sent(server: ServerProcess, tmp: Path) -> None:
    stub = server.prediction_stub()
    grpc_inputs = [
        np.array([[1.0]], np.float32),
        np.array([[2.0], [3.0]], np.float32),
        np.array([[-4.0], [0.5], [9.0]], np.float32),
    ]
    for i, x in enumerate(grpc_inputs):
        stub.Predict(predict_request(x, version=1 if i == 1 else None), timeout=10)
    bad = predict_request(np.array([[1.0]], np.float32))
    bad.inputs["x"].dtype = types_pb2.DT_DOUBLE  # refused: never logged
    with pytest.raises(grpc.RpcError):
        stub.Predict(bad, timeout=10)
    rest_inputs = [[[7.0]], [[8.0], [10.0]]]
    for instances in rest_inputs:
        assert post(server, "/v1/models/hpt:predict", {"instances": instances}) == 200

    records = read_logs(tmp, "hpt")

    sent = [*grpc_inputs, *(np.array(i, np.float32) for i in rest_inputs)]
    assert [r.WhichOneof("log_type") for r in records] == ["predict_log"] * len(sent)
    for record, x in zip(records, sent, strict=True):
        request, response = record.predict_log.request, record.predict_log.response
        assert request.model_spec.name == "hpt"
        np.testing.assert_array_equal(to_ndarray(request.inputs["x"]), x)
        np.testing.assert_array_equal(to_ndarray(response.outputs["y"]), 0.5 * x + 2.0)
        assert (response.model_spec.name, response.model_spec.version.value) == ("hpt", 1)
        assert record.log_metadata.model_spec == response.model_spec
        assert record.log_metadata.sampling_config.sampling_rate == 1.0
        assert record.log_metadata.timestamp_secs > 0
    assert records[1].predict_log.request.model_spec.version.value == 1


def test_classify_and_regress_are_logged_with_their_input(server: ServerProcess, tmp: Path) -> None:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "cr"
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([1.0, 2.0])
    example.features.feature["k"].int64_list.value.append(2)
    example.features.feature["lang"].bytes_list.value.append(b"en")
    server.prediction_stub().Regress(request, timeout=10)

    (record,) = read_logs(tmp, "cr")

    assert record.regress_log.request == request
    assert [r.value for r in record.regress_log.response.result.regressions] == [6.0]


def test_rate_zero_writes_no_file(server: ServerProcess, tmp: Path) -> None:
    request = predict_request(np.array([[1.0]], np.float32))
    request.model_spec.name = "quiet"
    for _ in range(10):
        server.prediction_stub().Predict(request, timeout=10)

    assert list((tmp / "logs").glob("quiet*")) == []


def test_metrics_are_off_without_a_monitoring_config(server: ServerProcess) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=10)
    try:
        connection.request("GET", "/monitoring/prometheus/metrics")
        assert connection.getresponse().status == 404
    finally:
        connection.close()


def test_json_log_lines_carry_the_lifecycle_fields(server: ServerProcess) -> None:
    lines = [line for line in server.log().splitlines() if line.strip()]

    documents = [json.loads(line) for line in lines]  # every line is one JSON object

    assert all({"time", "level", "logger", "message"} <= d.keys() for d in documents)
    lifecycle = [
        (d["event"], d["version"], d["state"])
        for d in documents
        if d["logger"] == "servingd.lifecycle" and d["model"] == "hpt"
    ]
    assert lifecycle == [
        ("discovered", 1, "START"),
        ("loading", 1, "LOADING"),
        ("available", 1, "AVAILABLE"),
    ]
    (available,) = [
        d for d in documents if d.get("event") == "available" and d.get("model") == "hpt"
    ]
    assert available["load_ms"] > 0
    loaded = "Successfully loaded servable version {name: hpt version: 1} in "
    assert available["message"] == f"{loaded}{available['load_ms']:.0f} ms"
