"""Issue 2: a real servingd process answers Predict, GetModelMetadata and GetModelStatus."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest

from servingd.protos.tensorflow.core.framework import types_pb2
from servingd.protos.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
)
from servingd.testing.models import affine, write_version
from tests.integration.conftest import StartServer
from tests.integration.server_process import ServerProcess

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


@pytest.fixture
def half_plus_two(tmp_path: Path) -> Path:
    base = tmp_path / "half_plus_two"
    write_version(base, 1, affine(0.5, 2.0))
    write_version(base, 2, affine(0.5, 3.0))
    return base


@pytest.fixture
def server(start_server: StartServer, half_plus_two: Path, tmp_path: Path) -> ServerProcess:
    config = tmp_path / "models.config"
    config.write_text(
        "model_config_list {\n"
        "  config {\n"
        "    name: 'half_plus_two'\n"
        f"    base_path: '{half_plus_two}'\n"
        "    model_platform: 'onnx'\n"
        "    model_version_policy { all {} }\n"
        "  }\n"
        "}\n"
    )
    server = start_server(f"--model_config_file={config}", rest=False)
    server.wait_until_available("half_plus_two", version=1)
    server.wait_until_available("half_plus_two", version=2)
    return server


def _request(
    x: np.ndarray, encoding: str, version: int | None = None
) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    if version is not None:
        request.model_spec.version.value = version
    tensor = request.inputs["x"]
    tensor.dtype = types_pb2.DT_FLOAT
    for size in x.shape:
        tensor.tensor_shape.dim.add().size = size
    if encoding == "tensor_content":
        tensor.tensor_content = x.astype("<f4").tobytes()
    else:
        tensor.float_val.extend(x.ravel().tolist())
    return request


def _output(response: predict_pb2.PredictResponse) -> np.ndarray:
    y = response.outputs["y"]
    assert y.dtype == types_pb2.DT_FLOAT
    shape = [d.size for d in y.tensor_shape.dim]
    # TF Serving answers in the typed field by default, not in tensor_content.
    assert not y.tensor_content
    return np.array(y.float_val, dtype=np.float32).reshape(shape)


@pytest.mark.parametrize("encoding", ["float_val", "tensor_content"])
@pytest.mark.parametrize("batch", [1, 8])
def test_predict_latest_and_specific_version(
    server: ServerProcess, encoding: str, batch: int
) -> None:
    stub = server.prediction_stub()
    x = np.arange(batch, dtype=np.float32).reshape(batch, 1) * 1.5 - 2.0

    latest = stub.Predict(_request(x, encoding), timeout=10)
    np.testing.assert_array_equal(_output(latest), 0.5 * x + 3.0)
    assert latest.model_spec.name == "half_plus_two"
    assert latest.model_spec.version.value == 2
    assert latest.model_spec.signature_name == "serving_default"

    v1 = stub.Predict(_request(x, encoding, version=1), timeout=10)
    np.testing.assert_array_equal(_output(v1), 0.5 * x + 2.0)
    assert v1.model_spec.version.value == 1


def test_predict_unknown_version_is_not_found(server: ServerProcess) -> None:
    with pytest.raises(grpc.RpcError) as info:
        server.prediction_stub().Predict(
            _request(np.ones((1, 1)), "float_val", version=7), timeout=10
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "Servable not found for request: Specific(half_plus_two, 7)"


def test_get_model_metadata(server: ServerProcess) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "half_plus_two"
    request.metadata_field.append("signature_def")
    response = server.prediction_stub().GetModelMetadata(request, timeout=10)
    assert response.model_spec.name == "half_plus_two"
    assert response.model_spec.version.value == 2
    assert list(response.metadata) == ["signature_def"]
    packed = response.metadata["signature_def"]
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert packed.Unpack(signature_map)
    default = signature_map.signature_def["serving_default"]
    assert default.method_name == "tensorflow/serving/predict"
    assert default.inputs["x"].dtype == types_pb2.DT_FLOAT
    assert [d.size for d in default.inputs["x"].tensor_shape.dim] == [-1, 1]
    assert [d.size for d in default.outputs["y"].tensor_shape.dim] == [-1, 1]


def test_get_model_status_lists_versions_newest_first(server: ServerProcess) -> None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half_plus_two"
    response = server.model_stub().GetModelStatus(request, timeout=10)
    assert [(s.version, s.state, s.status.error_code) for s in response.model_version_status] == [
        (2, AVAILABLE, 0),
        (1, AVAILABLE, 0),
    ]


def test_single_model_flags_serve_the_newest_version(
    start_server: StartServer, half_plus_two: Path
) -> None:
    server = start_server(
        "--model_name=half_plus_two", f"--model_base_path={half_plus_two}", wait_for="half_plus_two"
    )
    response = server.prediction_stub().Predict(
        _request(np.array([[4.0]], np.float32), "float_val"), timeout=10
    )
    assert response.model_spec.version.value == 2
    np.testing.assert_array_equal(_output(response), [[5.0]])
    assert "Successfully loaded servable version {name: half_plus_two version: 2}" in server.log()
