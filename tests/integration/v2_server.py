"""Shared pieces of the V2 integration tests: the models, a server serving them, and
tritonclient.grpc calls run in a separate process.

tritonclient.grpc registers its own generated `inference` protos (file grpc_service.proto)
in protobuf's default descriptor pool; servingd's stubs register the same message names
(file inference/grpc_service.proto), and one process cannot hold both ("duplicate symbol
'inference.ServerLiveRequest'"). The test process imports servingd's stubs (its unit tests
do), so every tritonclient.grpc call runs in a spawned worker process: the functions below
import tritonclient.grpc only there, and return plain values (never its exceptions).
tritonclient.http uses no protobuf and runs in the test process.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from servingd.testing.models import affine, echo, two_in_two_out, write_version
from tests.integration.server_process import ServerProcess

T = TypeVar("T")
CALL_TIMEOUT = 60.0
TYPES = ("string", "bool", "float16", "float64", "int8", "uint64")  # the `types` echo model


def write_repository(root: Path) -> Path:
    """A Triton-style model repository: one directory per model, version directories in it."""
    repo = root / "repo"
    write_version(repo / "half_plus_two", 1, affine(0.5, 2.0))
    write_version(repo / "half_plus_two", 2, affine(0.5, 3.0))
    write_version(repo / "two", 1, two_in_two_out())
    write_version(repo / "types", 1, echo(TYPES))
    write_version(repo / "spare", 4, affine(2.0, 1.0))
    return repo


def start_v2_server(
    root: Path, models: Sequence[str], *flags: str, rest: bool = True
) -> ServerProcess:
    """servingd serving `models` from the repository under `root`, with its V2 root set."""
    repo = write_repository(root)
    entries = []
    for name in models:
        extra = ""
        if name == "half_plus_two":
            extra = "model_version_policy { all {} } version_labels { key: 'stable' value: 1 }"
        entries.append(f"config {{ name: '{name}' base_path: '{repo / name}' {extra} }}\n")
    config = root / "models.config"
    config.write_text("model_config_list {\n" + "".join(entries) + "}\n")
    server = ServerProcess(
        [f"--model_config_file={config}", f"--model_repository_root={repo}", *flags],
        root / "servingd.log",
        rest=rest,
    ).start()
    try:
        for name in models:
            server.wait_until_available(name)
        if "half_plus_two" in models:
            server.wait_until_available("half_plus_two", version=1)
    except BaseException:
        server.stop()
        raise
    return server


# The counters a request moves, in this order, in stat_counts' tuples.
STAT_FIELDS = (
    "inference_count",
    "execution_count",
    "success",
    "fail",
    "queue",
    "compute_input",
    "compute_infer",
    "compute_output",
)


def stat_counts(statistics: Any) -> dict[tuple[str, str], tuple[int, ...]]:
    """(model, version) -> the STAT_FIELDS counts of a statistics answer: tritonclient.grpc's
    JSON (64-bit numbers as strings, zeros left out) or the REST JSON (numbers, all fields)."""
    out = {}
    for entry in statistics.get("model_stats", []):
        infer = entry.get("inference_stats", {})
        out[(entry["name"], entry["version"])] = (
            int(entry.get("inference_count", 0)),
            int(entry.get("execution_count", 0)),
            *(int(infer.get(key, {}).get("count", 0)) for key in STAT_FIELDS[2:]),
        )
    return out


def minus(after: tuple[int, ...], before: tuple[int, ...]) -> dict[str, int]:
    """The counters that moved between two stat_counts tuples, by name."""
    moved = zip(STAT_FIELDS, after, before, strict=True)
    return {name: a - b for name, a, b in moved if a != b}


@contextmanager
def triton_grpc_worker() -> Iterator[Callable[..., Any]]:
    """`call(function, *args)` runs a function of this module in the tritonclient process."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:

        def call(function: Callable[..., T], *args: Any) -> T:
            return pool.submit(function, *args).result(timeout=CALL_TIMEOUT)

        yield call


# ----- run in the worker process ---------------------------------------------------------


def _client(target: str) -> Any:
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(target)


def _error(exc: Exception) -> tuple[str, str]:
    return str(getattr(exc, "status", lambda: "")()), str(getattr(exc, "message", lambda: "")())


def grpc_health(target: str, models: Sequence[tuple[str, str]]) -> dict[str, Any]:
    client = _client(target)
    metadata = client.get_server_metadata(as_json=True)
    return {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "models": [client.is_model_ready(name, version) for name, version in models],
        "metadata": metadata,
    }


def grpc_model_metadata(target: str, name: str, version: str) -> Any:
    return _client(target).get_model_metadata(name, version, as_json=True)


def grpc_infer(
    target: str,
    model: str,
    version: str,
    inputs: Sequence[tuple[str, str, np.ndarray]],
    outputs: Sequence[str] = (),
    request_id: str = "",
) -> dict[str, Any]:
    """{"outputs": {name: array}, "model_version", "id"} or {"error": (status, message)}."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = _client(target)
    infer_inputs = []
    for name, dtype_name, array in inputs:
        tensor = grpcclient.InferInput(name, list(array.shape), dtype_name)
        tensor.set_data_from_numpy(array)
        infer_inputs.append(tensor)
    requested = [grpcclient.InferRequestedOutput(name) for name in outputs] or None
    try:
        result = client.infer(
            model, infer_inputs, version, outputs=requested, request_id=request_id
        )
    except InferenceServerException as exc:
        return {"error": _error(exc)}
    response = result.get_response()
    return {
        "outputs": {o.name: result.as_numpy(o.name) for o in response.outputs},
        "model_version": response.model_version,
        "id": response.id,
    }


def grpc_repository(target: str, action: str, model: str = "") -> Any:
    """index (as JSON), or load / unload a model: None on success, (status, message) else."""
    from tritonclient.utils import InferenceServerException

    client = _client(target)
    try:
        if action == "index":
            return client.get_model_repository_index(as_json=True)
        if action == "load":
            client.load_model(model)
        else:
            client.unload_model(model)
    except InferenceServerException as exc:
        return _error(exc)
    return None


def grpc_model_config(target: str, name: str, version: str) -> Any:
    """get_model_config as tritonclient's JSON, or (status, message) on an error."""
    from tritonclient.utils import InferenceServerException

    try:
        return _client(target).get_model_config(name, version, as_json=True)
    except InferenceServerException as exc:
        return _error(exc)


def grpc_statistics(target: str, name: str = "", version: str = "") -> Any:
    """get_inference_statistics as tritonclient's JSON, or (status, message) on an error."""
    from tritonclient.utils import InferenceServerException

    try:
        return _client(target).get_inference_statistics(name, version, as_json=True)
    except InferenceServerException as exc:
        return _error(exc)
