"""`--workers N`: N servingd processes share the gRPC and REST ports under one supervisor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from servingd.protos.tensorflow.core.framework import types_pb2
from servingd.protos.tensorflow_serving.apis import predict_pb2
from servingd.testing.models import affine, write_version
from tests.integration.conftest import StartServer
from tests.integration.server_process import ServerProcess, free_port

WAIT_SECONDS = 60.0


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    base = tmp_path / "tiny"
    write_version(base, 1, affine(0.5, 2.0))
    return base


def worker_pids(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except OSError:
            continue  # exited while we looked
        if int(text[text.rindex(")") + 2 :].split()[1]) == parent:
            found.append(int(entry))
    return sorted(found)


def wait_exit(process: subprocess.Popen[bytes], log: str) -> int:
    try:
        return process.wait(WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
        raise AssertionError(f"the supervisor did not exit:\n{log}") from None


def predict(server: ServerProcess, value: float) -> float:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny"
    tensor = request.inputs["x"]
    tensor.dtype = types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add().size = 1
    tensor.tensor_shape.dim.add().size = 1
    tensor.float_val.append(value)
    response = server.prediction_stub().Predict(request, timeout=10)
    return float(np.array(response.outputs["y"].float_val)[0])


def rest_predict(server: ServerProcess, value: float) -> float:
    body = json.dumps({"instances": [[value]]}).encode()
    request = urllib.request.Request(
        f"{server.rest_url}/v1/models/tiny:predict", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return float(json.loads(answer.read())["predictions"][0][0])


def test_two_workers_answer_grpc_and_rest_and_stop_on_sigterm(
    start_server: StartServer, tiny: Path
) -> None:
    server = start_server(
        "--model_name=tiny", f"--model_base_path={tiny}", "--workers=2", wait_for="tiny"
    )
    assert server.process is not None
    workers = worker_pids(server.process.pid)
    assert len(workers) == 2, server.log()
    # The supervisor checked the flags with all of servingd imported, then became the light
    # `python -m servingd.workers`, with the same pid: no gRPC library in its memory.
    with open(f"/proc/{server.process.pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[1:3] == [b"-m", b"servingd.workers"]
    with open(f"/proc/{server.process.pid}/maps") as f:
        assert "cygrpc" not in f.read()
    assert "INFO servingd.workers: Started worker 2 of 2" in server.log()
    # The kernel hands each new connection to one of the listening workers (a worker still
    # loading has no listening socket yet); every answer must be right.
    for i in range(8):
        assert predict(server, float(i)) == 0.5 * i + 2
        assert rest_predict(server, float(i)) == 0.5 * i + 2
    assert server.stop() == 0, server.log()
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid), f"worker {pid} outlived it"


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return True
    return text[text.rindex(")") + 2] == "Z"


def test_a_worker_that_dies_stops_the_others_and_the_supervisor_fails(
    start_server: StartServer, tiny: Path
) -> None:
    server = start_server(
        "--model_name=tiny", f"--model_base_path={tiny}", "--workers=2", wait_for="tiny"
    )
    assert server.process is not None
    first, second = worker_pids(server.process.pid)
    os.kill(first, signal.SIGKILL)
    code = wait_exit(server.process, server.log())
    assert code == 128 + signal.SIGKILL, server.log()
    assert "exited with -9: stopping the others" in server.log()
    assert not os.path.exists(f"/proc/{second}") or _is_zombie(second)


def test_workers_that_cannot_start_fail_the_supervisor(tmp_path: Path) -> None:
    base = tmp_path / "broken"
    write_version(base, 1, b"not an ONNX model")
    args = [sys.executable, "-m", "servingd.main", f"--port={free_port()}", "--host=127.0.0.1"]
    args += ["--model_name=broken", f"--model_base_path={base}", "--max_num_load_retries=0"]
    result = subprocess.run(
        [*args, "--workers=2"], capture_output=True, text=True, timeout=WAIT_SECONDS
    )
    assert result.returncode == 255, result.stderr
    assert "Failed to start server. Error:" in result.stderr
    assert "exited with 255: stopping the others" in result.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--port=0", "--grpc_socket_path=/tmp/servingd-workers-test.sock"], "fixed --port"),
        (["--grpc_socket_path=/tmp/servingd-workers-test.sock"], "cannot share"),
    ],
)
def test_workers_refuse_what_they_cannot_share(tiny: Path, flags: list[str], message: str) -> None:
    args = [sys.executable, "-m", "servingd.main", "--model_name=tiny"]
    args += [f"--model_base_path={tiny}", "--workers=2", *flags]
    if not any(flag.startswith("--port=") for flag in flags):
        args.append(f"--port={free_port()}")
    started = time.monotonic()
    result = subprocess.run(args, capture_output=True, text=True, timeout=WAIT_SECONDS)
    assert result.returncode == 255, result.stderr
    assert message in result.stderr
    assert time.monotonic() - started < WAIT_SECONDS
