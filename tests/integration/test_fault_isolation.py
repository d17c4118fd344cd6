"""Issue 9, fault isolation: a corrupt model.onnx, a load that raises, a version directory
deleted mid-load and an unreadable file never disturb the version being served: it answers
every request; status shows the failed version's error; retries follow
--max_num_load_retries and --load_retry_interval_micros; and hundreds of failed loads leak
no thread and no file descriptor.

Tests run as root, for whom `chmod 000` does not stop a read. "Unreadable" is therefore made
in two ways root cannot read through either: an external-data file that is a FIFO (onnxruntime
refuses to read weights from anything but a regular file), and a `model.onnx` that is a
directory (never a complete version, so never aspired).
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from servingd.protos.tensorflow_serving.apis import prediction_log_pb2
from servingd.servables.tfrecord import write_records
from servingd.servables.warmup import warmup_requests_path
from servingd.testing.models import affine, affine_with_external_data, slow_identity
from tests.integration.reliability import (
    AVAILABLE,
    END,
    ClientLoad,
    ProcessStats,
    StatusWatcher,
    output,
    predict_request,
    report,
    slow_request,
)
from tests.integration.server_process import ServerProcess

RETRIES = 2
RETRY_MICROS = 100_000
INVALID_ARGUMENT, UNIMPLEMENTED = 3, 12


def stage(staging: Path, files: dict[str, bytes | None]) -> Path:
    """A version directory built aside (`None` makes a FIFO, a name ending in / a directory),
    to be renamed into place in one step."""
    staging.mkdir(parents=True)
    for name, data in files.items():
        path = staging / name.rstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            path.mkdir()
        elif data is None:
            os.mkfifo(path)
        else:
            path.write_bytes(data)
    return staging


def put(staged: Path, base: Path, version: int) -> Path:
    target = base / str(version)
    base.mkdir(parents=True, exist_ok=True)
    staged.rename(target)
    return target


def warmup_bytes(tmp: Path, logs: list[Any]) -> bytes:
    path = tmp / f"warmup-{time.monotonic_ns()}"
    write_records(path, [log.SerializeToString() for log in logs])
    return path.read_bytes()


def session_run_log() -> Any:
    """A warmup record TF Serving cannot replay: the load fails after the session exists."""
    log = prediction_log_pb2.PredictionLog()
    log.session_run_log.request.model_spec.name = "x"
    return log


def slow_predict_log(iterations: int) -> Any:
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.CopyFrom(slow_request("x", iterations))
    return log


def affine_call(model: str, offset: float) -> Any:
    def call(stub: Any) -> int:
        response = stub.Predict(predict_request(model, np.array([[2.0]])), timeout=30)
        assert output(response).tolist() == [[1.0 + offset]], response
        return int(response.model_spec.version.value)

    return call


def slow_call(stub: Any) -> int:
    request = slow_request("deleted", 1)
    response = stub.Predict(request, timeout=30)
    x = np.frombuffer(request.inputs["x"].tensor_content, "<f4").reshape(16, 256)
    np.testing.assert_array_equal(output(response), x)
    return int(response.model_spec.version.value)


MODELS = ("corrupt", "raises", "unreadable")  # version 1 of each: y = 0.5x


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[ServerProcess]:
    lines = []
    for name, model in [*((m, affine(0.5, 0.0)) for m in MODELS), ("deleted", slow_identity())]:
        put(stage(root / "staging" / name / "1", {"model.onnx": model}), root / name, 1)
        lines.append(f"  config {{ name: '{name}' base_path: '{root / name}' }}\n")
    config = root / "models.config"
    config.write_text("model_config_list {\n" + "".join(lines) + "}\n")
    process = ServerProcess(
        [
            f"--model_config_file={config}",
            f"--max_num_load_retries={RETRIES}",
            f"--load_retry_interval_micros={RETRY_MICROS}",
            "--file_system_poll_wait_seconds=1",
        ],
        root / "servingd.log",
        rest=False,
    ).start()
    try:
        for name in [*MODELS, "deleted"]:
            process.wait_until_available(name)
        yield process
    finally:
        process.stop()


def serving_through(
    server: ServerProcess, model: str, call: Any, watcher: StatusWatcher, version: int, state: int
) -> list[Any]:
    """Runs 4 clients on `model` until `version` reached `state`; returns their calls."""
    load = ClientLoad(server.grpc_target, call).start()
    try:
        load.wait_for_calls(20)
        watcher.wait_for(version, state, why=server.log)
        load.wait_for_calls(load.count() + 20)
    finally:
        calls = load.stop()
    return calls


def attempts(log: str, model: str, version: int) -> list[tuple[float, str]]:
    """(time, what) of each failed attempt: a retry's number, or "failed" for the last."""
    found = re.findall(
        r"^\d+-\d+-\d+ (\d+):(\d+):(\d+),(\d+) .*"
        rf"(?:\{{name: {model} version: {version}\}} failed, retry (\d) of {RETRIES} in 0\.1 s"
        rf"|Encountered an error for servable version \{{name: {model} version: {version}\}}: )",
        log,
        re.MULTILINE,
    )
    return [
        (int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000, retry or "failed")
        for h, m, s, ms, retry in found
    ]


@pytest.mark.parametrize(
    ("model", "files", "code", "message"),
    [
        (
            "corrupt",
            {"model.onnx": bytes(np.random.default_rng(7).integers(0, 256, 4096, np.uint8))},
            INVALID_ARGUMENT,
            r"Failed to load ONNX model {dir}/model.onnx: .*INVALID_PROTOBUF.*",
        ),
        (
            "raises",
            {"model.onnx": affine(0.5, 1.0), "warmup": b""},
            UNIMPLEMENTED,
            r"Unsupported log_type for warmup: 5",
        ),
        (
            "unreadable",
            {"model.onnx": affine_with_external_data(0.5, 1.0)[0], "weights.bin": None},
            INVALID_ARGUMENT,
            r"Failed to load ONNX model {dir}/model.onnx: .*"
            r"Random-access reads require a regular file: {dir}/weights.bin.*",
        ),
    ],
)
def test_a_version_that_fails_to_load_leaves_the_serving_one_answering(
    server: ServerProcess, root: Path, model: str, files: dict[str, Any], code: int, message: str
) -> None:
    if "warmup" in files:
        del files["warmup"]
        warmup = warmup_requests_path("").as_posix()
        files[warmup] = warmup_bytes(root, [session_run_log()])
    staged = stage(root / "staging" / model / "2", files)
    watcher = StatusWatcher(server.grpc_target, model).start()
    try:
        version_dir = root / model / "2"
        put(staged, root / model, 2)
        calls = serving_through(server, model, affine_call(model, 0.0), watcher, 2, END)
    finally:
        watcher.stop()
    # Every request was answered, by version 1.
    assert calls and {c.version for c in calls} == {1}, [c for c in calls if c.version != 1]
    failed = watcher.last_status[2]
    assert (failed.state, failed.error_code) == (END, code), failed
    expected = message.format(dir=re.escape(str(version_dir)))
    assert re.fullmatch(expected, failed.error_message, re.DOTALL), failed.error_message
    serving = watcher.last_status[1]
    assert (serving.state, serving.error_code) == (AVAILABLE, 0)
    # --max_num_load_retries=2: three attempts, each failure but the last followed by a retry
    # --load_retry_interval_micros later (log times are cut to the millisecond).
    tried = attempts(server.log(), model, 2)
    assert [what for _, what in tried] == ["1", "2", "failed"]
    assert all(b - a >= 0.099 for (a, _), (b, _) in itertools.pairwise(tried)), tried


def test_model_onnx_that_is_a_directory_is_never_loaded(server: ServerProcess, root: Path) -> None:
    staged = stage(root / "staging" / "unreadable" / "3", {"model.onnx/": None})
    watcher = StatusWatcher(server.grpc_target, "unreadable").start()
    try:
        put(staged, root / "unreadable", 3)
        note = f"Version 3 of servable unreadable at {root / 'unreadable' / '3'} is not complete"
        deadline = time.monotonic() + 30
        while note not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        calls = serving_through(
            server, "unreadable", affine_call("unreadable", 0.0), watcher, 1, AVAILABLE
        )
    finally:
        watcher.stop()
    assert calls and {c.version for c in calls} == {1}
    assert 3 not in watcher.last_status  # never aspired, so never tried


def open_by(pid: int, path: Path) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir():
        try:
            if os.readlink(fd) == str(path):
                return True
        except OSError:
            continue  # closed while we looked
    return False


def test_version_directory_deleted_mid_load(server: ServerProcess, root: Path) -> None:
    """The directory goes while the load replays its (slow) warmup: the loader already holds
    what it needs, so the version comes up, and goes again since its directory is gone; the
    version that served before is aspired again, and every request is answered."""
    assert server.process is not None
    warmup = warmup_requests_path("").as_posix()
    staged = stage(
        root / "staging" / "deleted" / "2",
        {
            "model.onnx": slow_identity(),
            warmup: warmup_bytes(root, [slow_predict_log(20_000)]),
        },
    )
    watcher = StatusWatcher(server.grpc_target, "deleted").start()
    load = ClientLoad(server.grpc_target, slow_call).start()
    try:
        load.wait_for_calls(20)
        version_dir = put(staged, root / "deleted", 2)
        warmup_path = version_dir / warmup
        deadline = time.monotonic() + 30
        while not open_by(server.process.pid, warmup_path):  # the load is replaying it
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.005)
        shutil.rmtree(version_dir)
        watcher.wait_for(2, END, why=server.log)
        load.wait_for_calls(load.count() + 20)
    finally:
        calls = load.stop()
        watcher.stop()
    assert load.failures() == []
    assert {c.version for c in calls} <= {1, 2}
    assert watcher.available_since(2) is not None
    loaded = watcher.last_status[2]
    assert (loaded.state, loaded.error_code) == (END, 0), loaded
    assert (watcher.last_status[1].state, watcher.last_status[1].error_code) == (AVAILABLE, 0)


def test_hundreds_of_failed_loads_leak_no_thread_and_no_file(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    """--max_num_load_retries=66 at 1 ms: each bad version is 67 failed loads. Three kinds
    of failure (corrupt file, failing warmup after the session exists, unreadable weights),
    two rounds; the second (201 failed loads) must end where the first left the process."""
    kinds = {
        "corrupt": lambda: {"model.onnx": b"\x08\x07garbage" * 100},
        "raises": lambda: {
            "model.onnx": affine(0.5, 1.0),
            warmup_requests_path("").as_posix(): warmup_bytes(tmp_path, [session_run_log()]),
        },
        "unreadable": lambda: {
            "model.onnx": affine_with_external_data(0.5, 1.0)[0],
            "weights.bin": None,
        },
    }
    lines = []
    for name in kinds:
        put(
            stage(tmp_path / "staging" / name / "1", {"model.onnx": affine(0.5, 0.0)}),
            tmp_path / name,
            1,
        )
        lines.append(f"  config {{ name: '{name}' base_path: '{tmp_path / name}' }}\n")
    config = tmp_path / "models.config"
    config.write_text("model_config_list {\n" + "".join(lines) + "}\n")
    server = ServerProcess(
        [
            f"--model_config_file={config}",
            "--max_num_load_retries=66",
            "--num_load_threads=3",  # the three models fail in parallel
            "--load_retry_interval_micros=1000",
        ],
        tmp_path / "servingd.log",
        rest=False,
    ).start()
    try:
        for name in kinds:
            server.wait_until_available(name)
        assert server.process is not None
        stats = ProcessStats(server.process.pid)

        def fail_round(version: int) -> tuple[int, int]:
            watchers = {n: StatusWatcher(server.grpc_target, n).start() for n in kinds}
            loads = [
                ClientLoad(server.grpc_target, affine_call(n, 0.0), threads=1).start()
                for n in kinds
            ]
            try:
                for name, make in kinds.items():
                    staged = stage(tmp_path / "staging" / name / str(version), make())
                    put(staged, tmp_path / name, version)
                for watcher in watchers.values():
                    watcher.wait_for(version, END, timeout=60, why=server.log)
                    assert watcher.last_status[version].error_code != 0
            finally:
                for load in loads:
                    load.stop()
                    assert load.failures() == []
                for watcher in watchers.values():
                    watcher.stop()
            log = server.log()
            for name in kinds:
                assert log.count(f"{{name: {name} version: {version}}} failed, retry") == 66
                shutil.rmtree(tmp_path / name / str(version))
            stats.wait_until_idle()
            return stats.threads(), stats.open_fds()

        warmed_up = fail_round(2)
        rss = stats.rss_bytes()
        after = fail_round(3)
        report(
            pytestconfig,
            f"\n201 failed loads: threads {warmed_up[0]} -> {after[0]}, open fds {warmed_up[1]}"
            f" -> {after[1]}, RSS {rss >> 20} -> {stats.rss_bytes() >> 20} MiB",
        )
        assert after == warmed_up
    finally:
        server.stop()
