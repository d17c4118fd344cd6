"""Issue 9, graceful shutdown: SIGTERM or SIGINT stops accepting, lets in-flight requests
finish (bounded by --shutdown_grace_seconds), unloads, and exits 0 in the documented order;
a second signal exits at once."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from servingd.protos.tensorflow_serving.apis import prediction_service_pb2_grpc
from servingd.testing.models import affine, slow_identity, write_version
from tests.integration.conftest import StartServer
from tests.integration.reliability import (
    ClientLoad,
    output,
    predict_request,
    slow_request,
    wait_until_full,
)
from tests.integration.server_process import ServerProcess

# 2 over gRPC, 1 over REST; also the slow model's in-flight limit. Fewer than the server's 4
# run threads, so the fast model's requests still find one free.
IN_FLIGHT = 3
ITERATIONS = 30_000  # about two seconds of one core per request
REFUSED = "The server is shutting down"
SHUTDOWN_ORDER = [
    "Received {signal}: shutting down",
    "Shutting down: refusing new requests; ",
    " in flight get up to 60.0 s to finish",
    "Every in-flight request finished",
    "Closed the gRPC and REST ports",
    "Stopping the model sources and unloading every servable version",
    "Unloading servable version {{name: slow version: 1}}",
    "Done unloading servable version {{name: slow version: 1}}",
    "Server stopped",
]


@pytest.fixture
def models(tmp_path: Path) -> Path:
    write_version(tmp_path / "slow", 1, slow_identity())
    write_version(tmp_path / "half", 1, affine(0.5, 2.0))
    config = tmp_path / "models.config"
    config.write_text(
        "model_config_list {\n"
        f"  config {{ name: 'slow' base_path: '{tmp_path / 'slow'}' }}\n"
        f"  config {{ name: 'half' base_path: '{tmp_path / 'half'}' }}\n"
        "}\n"
    )
    return config


def start(start_server: StartServer, config: Path, grace: float) -> ServerProcess:
    server = start_server(
        f"--model_config_file={config}",
        f"--max_inflight_requests_per_model={IN_FLIGHT}",
        f"--shutdown_grace_seconds={grace}",
        "--tensorflow_intra_op_parallelism=1",
    )
    server.wait_until_available("slow")
    server.wait_until_available("half")
    return server


def wait_for_log(server: ServerProcess, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.log():
        assert time.monotonic() < deadline, f"{text!r} never logged:\n{server.log()}"
        time.sleep(0.02)


def rest_predict(
    server: ServerProcess, body: dict[str, Any], result: list[Any], model: str = "slow"
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    try:
        connection.request("POST", f"/v1/models/{model}:predict", body=json.dumps(body))
        response = connection.getresponse()
        result.append((response.status, json.loads(response.read())))
    except Exception as exc:
        result.append(exc)
    finally:
        connection.close()


def half_call(stub: Any) -> int:
    response = stub.Predict(predict_request("half", np.array([[4.0]])), timeout=30)
    assert output(response).tolist() == [[4.0]], response
    return int(response.model_spec.version.value)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_in_flight_requests_then_unloads_and_exits_0(
    start_server: StartServer, models: Path, signum: signal.Signals
) -> None:
    server = start(start_server, models, grace=60)
    assert server.process is not None
    stub = server.prediction_stub()
    slow = slow_request("slow", ITERATIONS)
    x = np.frombuffer(slow.inputs["x"].tensor_content, "<f4").reshape(16, 256)
    grpc_calls = [stub.Predict.future(slow, timeout=60) for _ in range(IN_FLIGHT - 1)]
    rest_result: list[Any] = []
    rest_body = {"inputs": {"x": x.tolist(), "n": ITERATIONS}}
    rest_call = threading.Thread(target=rest_predict, args=(server, rest_body, rest_result))
    rest_call.start()
    # Fast requests to another model keep arriving until each client is refused. Fewer
    # clients than its in-flight limit: a refusal for the limit is not what this test is about
    # (a run that goes to the thread pool keeps its request in flight across an await).
    load = ClientLoad(
        server.grpc_target, half_call, threads=IN_FLIGHT - 1, stop_after_error=True
    ).start()
    try:
        load.wait_for_calls(20)
        wait_until_full(stub, "slow")
        signalled = time.monotonic()
        server.process.send_signal(signum)
        wait_for_log(server, "Shutting down: refusing new requests")
        # No longer accepting: new requests are refused, on either protocol, while the
        # ports stay open for the answers still to come.
        with grpc.insecure_channel(server.grpc_target) as channel:
            fresh = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                fresh.Predict(predict_request("half", np.array([[1.0]])), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert info.value.details() == REFUSED
        refusal: list[Any] = []
        rest_predict(server, {"instances": [[1.0]]}, refusal, "half")
        assert refusal == [(503, {"error": REFUSED})]
        # Every request that was in flight is answered, in full.
        for call in grpc_calls:
            np.testing.assert_array_equal(output(call.result()), x)
        rest_call.join(60)
        assert len(rest_result) == 1 and rest_result[0][0] == 200, rest_result
        np.testing.assert_array_equal(np.array(rest_result[0][1]["outputs"], np.float32), x)
        assert server.process.wait(30) == 0
    finally:
        calls = load.stop()
    # The other clients' calls were answered, or refused once shutdown began; none was cut
    # off half-way (which would show as CANCELLED, INTERNAL or a wrong answer).
    refused = f'details = "{REFUSED}"'
    assert calls and all(c.version == 1 or refused in c.error for c in calls), [
        (round(c.sent - signalled, 4), round(c.received - signalled, 4), c.error[60:120])
        for c in calls
        if c.version != 1
    ]
    answered = [c for c in calls if c.version == 1]
    assert len(answered) >= 20
    log = server.log()
    in_flight = re.search(r"refusing new requests; (\d+) in flight", log)
    assert in_flight is not None and int(in_flight.group(1)) >= IN_FLIGHT, log
    positions = [log.find(line.format(signal=signum.name)) for line in SHUTDOWN_ORDER]
    assert -1 not in positions and positions == sorted(positions), log


def test_grace_period_bounds_the_drain(start_server: StartServer, models: Path) -> None:
    server = start(start_server, models, grace=1)
    assert server.process is not None
    stub = server.prediction_stub()
    # Runs for minutes unless stopped: the grace period must cut it off.
    endless = [
        stub.Predict.future(slow_request("slow", 10**7), timeout=300) for _ in range(IN_FLIGHT)
    ]
    wait_until_full(stub, "slow")
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(30) == 0  # not minutes: the runs were stopped, not awaited
    for call in endless:
        with pytest.raises(grpc.RpcError) as info:
            call.result()
        assert info.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    log = server.log()
    over = log.find(f"Grace period of 1.0 s over: cancelling {IN_FLIGHT} request(s) still running")
    assert -1 < over < log.find("Done unloading servable version {name: slow version: 1}"), log
    assert "Server stopped" in log


def test_a_second_signal_exits_at_once(start_server: StartServer, models: Path) -> None:
    server = start(start_server, models, grace=300)
    assert server.process is not None
    stub = server.prediction_stub()
    endless = [
        stub.Predict.future(slow_request("slow", 10**7), timeout=300) for _ in range(IN_FLIGHT)
    ]
    wait_until_full(stub, "slow")
    server.process.send_signal(signal.SIGTERM)
    wait_for_log(server, "Shutting down: refusing new requests")
    server.process.send_signal(signal.SIGINT)
    try:
        assert server.process.wait(10) == 1
    except subprocess.TimeoutExpired:
        pytest.fail(f"the second signal did not end the process:\n{server.log()}")
    for call in endless:
        with pytest.raises(grpc.RpcError) as info:
            call.result()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    log = server.log()
    assert f"refusing new requests; {IN_FLIGHT} in flight get up to 300.0 s" in log
    assert "Second SIGINT: exiting at once" in log
    assert "Server stopped" not in log
