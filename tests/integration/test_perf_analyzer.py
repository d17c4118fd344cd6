"""Triton's perf_analyzer drives servingd with no special flag, in TF Serving mode (issue 10)
and in Triton mode over gRPC and HTTP (issue 11).

In TF Serving mode perf_analyzer reads GetModelMetadata for the signature, then sends Predict
with typed `float_val` inputs; `-x` travels as a version label, which servingd reads as the
version when it is a number. In Triton mode (`--service-kind=triton`) it reads the V2 model
metadata and ModelConfig, sends ModelInfer (raw contents over gRPC, binary tensors over HTTP),
and reads ModelStatistics before and after each window for its "Server:" section.
The binary comes from `bash bench/setup.sh` (out of the tritonclient wheel); without it these
tests are skipped.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from bench.tools import find_perf_analyzer, perf_analyzer_env
from servingd.testing.models import affine, write_version
from tests.integration.server_process import ServerProcess

PERF_ANALYZER = find_perf_analyzer()

pytestmark = pytest.mark.skipif(
    PERF_ANALYZER is None,
    reason="perf_analyzer is not installed: run `bash bench/setup.sh` (make bench does)",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # One server for the module (the start_server fixture is per test).
    root = tmp_path_factory.mktemp("perf_analyzer")
    base = root / "tiny"
    write_version(base, 1, affine(0.5, 2.0))
    write_version(base, 2, affine(0.5, 3.0))
    config = root / "models.config"
    config.write_text(
        f"model_config_list {{ config {{ name: 'tiny' base_path: '{base}' "
        "model_platform: 'onnx' model_version_policy { all {} } } }\n"
    )
    process = ServerProcess([f"--model_config_file={config}"], root / "servingd.log")
    process.start()
    try:
        process.wait_until_available("tiny", version=1)
        process.wait_until_available("tiny", version=2)
        yield process
    finally:
        process.stop()


def perf_analyzer(
    server: ServerProcess, *extra: str, kind: str = "tfserving", protocol: str = "grpc"
) -> subprocess.CompletedProcess[str]:
    assert PERF_ANALYZER is not None
    url = server.grpc_target if protocol == "grpc" else f"127.0.0.1:{server.rest_port}"
    args = [PERF_ANALYZER, f"--service-kind={kind}", "-u", url, "-i", protocol]
    return subprocess.run(
        [*args, *extra], capture_output=True, text=True, timeout=120, env=perf_analyzer_env()
    )


def measure(
    server: ServerProcess, *extra: str, kind: str = "tfserving", protocol: str = "grpc"
) -> str:
    """One bounded measurement (short windows, any three of which count as stable) that must
    report no error."""
    result = perf_analyzer(
        server,
        *("-m", "tiny", "--shape", "x:1,1"),
        "--measurement-interval=300",
        "--max-trials=6",
        "--stability-percentage=1000",  # any three windows: stability is not under test
        *extra,
        kind=kind,
        protocol=protocol,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{output}\n{server.log()}"
    assert "error" not in output.lower(), output
    assert "Request count: 0" not in output, output
    return output


def test_perf_analyzer_runs_against_servingd_without_errors(server: ServerProcess) -> None:
    assert "Throughput:" in measure(server)


def test_perf_analyzer_version_flag_selects_that_version(server: ServerProcess) -> None:
    assert "Throughput:" in measure(server, "-x", "1", "--concurrency-range=2")


def test_perf_analyzer_sees_servingd_errors(server: ServerProcess) -> None:
    result = perf_analyzer(server, "-m", "nope")
    assert result.returncode != 0
    assert "Servable not found for request: Latest(nope)" in result.stdout + result.stderr


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_perf_analyzer_triton_mode_runs_against_servingd_without_errors(
    server: ServerProcess, protocol: str
) -> None:
    output = measure(server, kind="triton", protocol=protocol)
    assert "Service Kind: TRITON" in output and "Throughput:" in output
    # The server-side section comes from servingd's ModelStatistics.
    server_side = output[output.index("  Server: ") :]
    assert "Inference count: 0" not in server_side, output
    assert "Successful request count:" in server_side, output
    assert "compute infer" in server_side, output


def test_perf_analyzer_triton_mode_version_flag_selects_that_version(
    server: ServerProcess,
) -> None:
    assert "Throughput:" in measure(server, "-x", "1", kind="triton")


def test_perf_analyzer_triton_mode_sees_servingd_errors(server: ServerProcess) -> None:
    result = perf_analyzer(server, "-m", "nope", kind="triton")
    assert result.returncode != 0
    assert "Servable not found for request: Latest(nope)" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("perf_analyzer_batching")
    write_version(root / "tiny", 1, affine(0.5, 2.0))
    process = ServerProcess(
        ["--model_name=tiny", f"--model_base_path={root / 'tiny'}", "--enable_batching"],
        root / "servingd.log",
        rest=False,
    )
    process.start()
    try:
        process.wait_until_available("tiny")
        yield process
    finally:
        process.stop()


def test_perf_analyzer_triton_mode_batches_a_batched_model(batching_server: ServerProcess) -> None:
    # ModelConfig says max_batch_size > 0: perf_analyzer drops the batch dimension from the
    # metadata's [-1, 1] and sends [4, 1]; the server counts 4 inferences per request.
    result = perf_analyzer(
        batching_server,
        *("-m", "tiny", "-b", "4"),
        "--measurement-interval=300",
        "--max-trials=6",
        "--stability-percentage=1000",  # any three windows: stability is not under test
        kind="triton",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{output}\n{batching_server.log()}"
    assert "error" not in output.lower(), output
    assert "Batch size: 4" in output, output
    server_side = output[output.index("  Server: ") :]
    inferences = int(server_side.split("Inference count: ")[1].split()[0])
    executions = int(server_side.split("Execution count: ")[1].split()[0])
    assert inferences == 4 * executions > 0, output
