"""Model stores on S3 and GCS: a real server of each (moto's S3, gcp-storage-emulator's GCS
JSON API) on loopback, started here.

Every test runs on both. The source is exercised in-process against the store (with stepped
clocks, so settling is deterministic), then a real servingd process serves `s3://...` or
`gs://...` from it with the credentials and endpoint taken from the environment, as a
deployment would.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gcp_storage_emulator.server import create_server
from moto.server import ThreadedMotoServer

from servingd.core.servable_data import ServableData
from servingd.protos.tensorflow_serving.apis import get_model_status_pb2, predict_pb2
from servingd.sources.file_system_storage_path_source import (
    All,
    FileSystemStoragePathSource,
    FileSystemStoragePathSourceConfig,
    ServableToMonitor,
)
from servingd.sources.object_storage import LISTING_FILE, cache_root, open_filesystem
from servingd.tensor_codec import to_ndarray, to_tensor_proto
from servingd.testing.models import affine
from tests.integration.conftest import StartServer
from tests.integration.server_process import ServerProcess, free_port

State = get_model_status_pb2.ModelVersionStatus


@dataclass
class Store:
    scheme: str  # s3 or gs
    fs: Any  # servingd's own file system for the scheme, made from the environment

    def uri(self, path: str) -> str:
        return f"{self.scheme}://{path}"

    def make_bucket(self, name: str) -> None:
        self.fs.mkdir(name)

    def upload(self, files: dict[str, bytes]) -> None:
        self.fs.pipe(files)

    def delete(self, prefix: str) -> None:
        self.fs.rm(prefix, recursive=True)


@contextlib.contextmanager
def s3_server(env: pytest.MonkeyPatch) -> Iterator[None]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        # What a deployment sets; servingd processes started here inherit it.
        env.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        env.setenv("AWS_ACCESS_KEY_ID", "test")
        env.setenv("AWS_SECRET_ACCESS_KEY", "test")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            env.delenv(name, raising=False)
        yield
    finally:
        server.stop()


@contextlib.contextmanager
def gcs_server(env: pytest.MonkeyPatch) -> Iterator[None]:
    logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        # What a deployment against an emulator sets: no credentials, so anonymous access.
        env.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        env.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        yield
    finally:
        server.stop()


@pytest.fixture(scope="module", params=["s3", "gs"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    serve = s3_server if request.param == "s3" else gcs_server
    with pytest.MonkeyPatch.context() as env, serve(env):
        yield Store(request.param, open_filesystem(f"{request.param}://"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_source_lists_settles_and_downloads(store: Store, tmp_path: Path) -> None:
    store.make_bucket("source-test")
    base = store.uri("source-test/models/half")
    store.upload(
        {
            "source-test/models/half/1/model.onnx": affine(0.5, 2.0),
            "source-test/models/half/2/variables.bin": b"upload in progress",
        }
    )
    calls: list[list[int]] = []

    def record(name: str, versions: Sequence[ServableData[str]]) -> None:
        calls.append([v.id.version for v in versions])

    clock = Clock()
    wall_offset = [3600.0]  # objects look old: settled at first sight
    source = FileSystemStoragePathSource(
        FileSystemStoragePathSourceConfig(
            servables=(ServableToMonitor("half", base, All()),), file_system_poll_wait_seconds=-1
        ),
        is_version_complete=lambda d: os.path.isfile(os.path.join(d, "model.onnx")),
        use_watchdog=False,
        clock=clock,
        wall_clock=lambda: time.time() + wall_offset[0],
        settle_seconds=0.5,
        object_storage_cache_dir=str(tmp_path),
    )
    source.set_aspired_versions_callback(record)
    root = Path(cache_root(str(tmp_path), base))

    # Version 2 has no model.onnx yet: not served.
    assert source.poll_once()
    assert calls[-1] == [1]
    assert (root / "1" / "model.onnx").read_bytes() == affine(0.5, 2.0)
    assert sorted(os.listdir(root)) == ["1"]

    # Its model arrives: but a fresh upload must settle first (the listing is re-checked).
    wall_offset[0] = 0.0
    store.upload({"source-test/models/half/2/model.onnx": affine(0.5, 3.0)})
    assert source.poll_once()
    assert calls[-1] == [1]
    clock.now += 0.5
    assert source.poll_once()
    assert calls[-1] == [1, 2]
    assert (root / "2" / "variables.bin").read_bytes() == b"upload in progress"

    # Gone remotely: unaspired, and its local copy removed.
    store.delete("source-test/models/half/1")
    assert source.poll_once()
    assert calls[-1] == [2]
    assert sorted(os.listdir(root)) == ["2"]


# ----- a real servingd on the store -----------------------------------------------------------


def predict(server: ServerProcess, x: np.ndarray, version: int | None = None) -> tuple[int, Any]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["x"].CopyFrom(to_tensor_proto(x))
    response = server.prediction_stub().Predict(request, timeout=10)
    return response.model_spec.version.value, to_ndarray(response.outputs["y"])


def states(server: ServerProcess) -> dict[int, int]:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half"
    response = server.model_stub().GetModelStatus(request, timeout=10)
    return {s.version: s.state for s in response.model_version_status}


def wait_for_states(server: ServerProcess, wanted: dict[int, int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    seen: dict[int, int] = {}
    while time.monotonic() < deadline:
        seen = states(server)
        if all(seen.get(v) == s for v, s in wanted.items()):
            return
        time.sleep(0.05)
    raise AssertionError(f"states {seen}, wanted {wanted}:\n{server.log()}")


def start_on_store(start_server: StartServer, tmp_path: Path, base: str) -> ServerProcess:
    config = tmp_path / "models.config"
    config.write_text(
        "model_config_list { config { name: 'half' "
        f"base_path: '{base}' model_platform: 'onnx' model_version_policy {{ all {{}} }} }} }}\n"
    )
    return start_server(
        f"--model_config_file={config}",
        f"--object_storage_cache_dir={tmp_path / 'cache'}",
        "--file_system_poll_wait_seconds=1",
        rest=False,
        wait_for="half",
    )


def test_servingd_serves_versions_as_they_appear_and_disappear(
    store: Store, start_server: StartServer, tmp_path: Path
) -> None:
    store.make_bucket("models")
    base = store.uri("models/half")
    store.upload({"models/half/1/model.onnx": affine(0.5, 2.0)})
    server = start_on_store(start_server, tmp_path, base)
    x = np.array([[1.0], [2.0], [5.0]], dtype=np.float32)
    version, y = predict(server, x)
    assert version == 1
    np.testing.assert_array_equal(y, 0.5 * x + 2.0)

    # Appear: a partial upload (3, no model.onnx) first, then a complete version 2.
    store.upload({"models/half/3/variables.bin": b"x" * 1024})
    store.upload({"models/half/2/model.onnx": affine(0.5, 3.0)})
    wait_for_states(server, {1: State.AVAILABLE, 2: State.AVAILABLE})
    version, y = predict(server, x)
    assert version == 2
    np.testing.assert_array_equal(y, 0.5 * x + 3.0)
    # The pass that aspired 2 listed 3 as well, and passed it over.
    assert 3 not in states(server)

    # Disappear.
    store.delete("models/half/1")
    wait_for_states(server, {1: State.END, 2: State.AVAILABLE})
    cache = Path(cache_root(str(tmp_path / "cache"), base))
    assert sorted(os.listdir(cache)) == ["2"]
    listing = os.stat(cache / "2" / LISTING_FILE)

    # Restart on the same cache: the unchanged version is not downloaded again.
    server.stop()
    again = start_on_store(start_server, tmp_path, base)
    assert predict(again, x)[0] == 2
    assert os.stat(cache / "2" / LISTING_FILE).st_ino == listing.st_ino
    assert f"Downloaded {base}/2" not in again.log()
    assert f"Downloaded {base}/2" in server.log()


def test_missing_bucket_is_reported_and_retried(
    store: Store, start_server: StartServer, tmp_path: Path
) -> None:
    base = store.uri("no-such-bucket/half")
    server = start_server(
        "--model_name=half",
        f"--model_base_path={base}",
        f"--object_storage_cache_dir={tmp_path / 'cache'}",
        rest=False,
    )
    error = f"Could not find base path {base} for servable half"
    deadline = time.monotonic() + 30
    while error not in server.log() and time.monotonic() < deadline:
        assert server.process is not None and server.process.poll() is None, server.log()
        time.sleep(0.05)
    assert error in server.log()

    store.make_bucket("no-such-bucket")
    store.upload({"no-such-bucket/half/7/model.onnx": affine(2.0, 0.0)})
    server.wait_until_available("half", timeout=30)
    version, y = predict(server, np.ones((1, 1), np.float32))
    assert version == 7
    np.testing.assert_array_equal(y, np.full((1, 1), 2.0, np.float32))
