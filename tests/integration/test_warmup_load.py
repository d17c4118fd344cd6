"""Issue 7: warmup runs inside the load, before AVAILABLE; a corrupt warmup file fails the new
version while the serving one stays AVAILABLE and keeps answering."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from servingd.protos.tensorflow_serving.apis import (
    get_model_status_pb2,
    predict_pb2,
    prediction_log_pb2,
)
from servingd.servables.tfrecord import encode_record, write_records
from servingd.servables.warmup import warmup_requests_path
from servingd.tensor_codec import to_tensor_proto
from servingd.testing.models import affine, write_version
from tests.integration.server_process import ServerProcess

ModelVersionStatus = get_model_status_pb2.ModelVersionStatus
WAIT_SECONDS = 30.0


def warmup_record(x: np.ndarray) -> bytes:
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.model_spec.name = "half"
    log.predict_log.request.inputs["x"].CopyFrom(to_tensor_proto(x.astype(np.float32)))
    return bytes(log.SerializeToString())


def write_version_with_warmup(base: Path, version: int, model: bytes, warmup: bytes) -> Path:
    """Warmup file first, model.onnx last and atomically: the source sees a complete version."""
    version_dir = base / str(version)
    path = warmup_requests_path(version_dir)
    path.parent.mkdir(parents=True)
    path.write_bytes(warmup)
    staged = version_dir / "model.onnx.tmp"
    staged.write_bytes(model)
    os.replace(staged, version_dir / "model.onnx")
    return version_dir


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models") / "half"
    version_dir = write_version(root, 1, affine(0.5, 2.0))
    path = warmup_requests_path(version_dir)
    path.parent.mkdir(parents=True)
    write_records(path, [warmup_record(np.full((n, 1), float(n))) for n in (1, 2, 3)])
    return root


@pytest.fixture(scope="module")
def server(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        [
            "--model_name=half",
            f"--model_base_path={base}",
            "--num_request_iterations_for_warmup=2",
            "--max_num_load_retries=0",
        ],
        tmp_path_factory.mktemp("log") / "servingd.log",
        rest=False,
    ).start()
    try:
        process.wait_until_available("half", version=1)
        yield process
    finally:
        process.stop()


def version_status(server: ServerProcess, version: int) -> Any:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half"
    request.model_spec.version.value = version
    (status,) = server.model_stub().GetModelStatus(request, timeout=10).model_version_status
    return status


def wait_for_state(server: ServerProcess, version: int, state: int) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = version_status(server, version)
            if last.state == state:
                return last
        except Exception as exc:  # the version may not be known yet
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"version {version} never reached {state} (last: {last}):\n{server.log()}")


def test_warmup_runs_inside_the_load_before_available(server: ServerProcess, base: Path) -> None:
    log = server.log()
    finished = (
        f"Finished reading warmup data for model at {warmup_requests_path(base / '1')}. "
        "Number of warmup records read: 3."
    )
    available = "Successfully loaded servable version {name: half version: 1} in "
    assert finished in log, log
    assert available in log, log
    assert log.index(finished) < log.index(available)


def test_corrupt_warmup_fails_the_new_version_and_the_old_keeps_serving(
    server: ServerProcess, base: Path
) -> None:
    good = encode_record(warmup_record(np.ones((1, 1))))
    corrupt = bytearray(good * 2)
    corrupt[len(good) + 20] ^= 0x01  # a data byte of the second record
    write_version_with_warmup(base, 2, affine(0.5, 3.0), bytes(corrupt))

    failed = wait_for_state(server, 2, ModelVersionStatus.END)
    assert failed.status.error_code == 15  # DATA_LOSS
    assert failed.status.error_message == (
        f"corrupted record at {len(good)}. Please verify your warmup data is in TFRecord format."
    )
    assert version_status(server, 1).state == ModelVersionStatus.AVAILABLE
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    request.inputs["x"].CopyFrom(to_tensor_proto(np.array([[4.0]], dtype=np.float32)))
    response = server.prediction_stub().Predict(request, timeout=10)
    assert response.model_spec.version.value == 1
    assert list(response.outputs["y"].float_val) == [4.0]  # 0.5 * 4 + 2, version 1's answer
