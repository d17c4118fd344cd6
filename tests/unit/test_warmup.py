"""Warmup: TFRecord reading and writing, TF's limits and errors, replay inside OnnxLoader.load,
and the servingd-make-warmup tool."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from servingd.core.status import Code, FailedPrecondition, ServingError
from servingd.protos.tensorflow_serving.apis import prediction_log_pb2
from servingd.servables.onnx import OnnxLoader, OnnxServable
from servingd.servables.tfrecord import encode_record, masked_crc32c, read_records, write_records
from servingd.servables.warmup import (
    WarmupOptions,
    run_saved_model_warmup,
    warmup_requests_path,
)
from servingd.tensor_codec import to_tensor_proto
from servingd.testing.models import affine, write_version
from servingd.tools import make_warmup

PredictionLog = prediction_log_pb2.PredictionLog


def predict_log(x: np.ndarray, input_name: str = "x", signature: str = "") -> bytes:
    log = PredictionLog()
    request = log.predict_log.request
    request.model_spec.name = "ignored"  # the loading version runs it, whatever this says
    request.model_spec.version.value = 999
    request.model_spec.signature_name = signature
    request.inputs[input_name].CopyFrom(to_tensor_proto(x.astype(np.float32)))
    return bytes(log.SerializeToString())


def regress_log(values: list[float]) -> bytes:
    log = PredictionLog()
    examples = log.regress_log.request.input.example_list.examples
    for value in values:
        examples.add().features.feature["x"].float_list.value.append(value)
    return bytes(log.SerializeToString())


def write_warmup(version_dir: Path, records: list[bytes]) -> Path:
    path = warmup_requests_path(version_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_records(path, records)
    return path


@pytest.fixture
def version_dir(tmp_path: Path) -> Path:
    return write_version(tmp_path / "half_plus_two", 1, affine(0.5, 2.0))


@pytest.fixture
def run_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, np.ndarray]]]:
    """Records the feeds of every OnnxServable.run, in order (the model counts its runs)."""
    runs: list[dict[str, np.ndarray]] = []
    original = OnnxServable.run

    def counting_run(self: OnnxServable, prepared: Any) -> dict[str, np.ndarray]:
        runs.append(dict(prepared.feeds))
        return original(self, prepared)

    monkeypatch.setattr(OnnxServable, "run", counting_run)
    yield runs


# ----- TFRecord ------------------------------------------------------------------------------


def test_crc32c_and_masking_match_the_tfrecord_spec() -> None:
    # CRC32C check value of "123456789" is 0xE3069283; mask = rotr15 + 0xa282ead8.
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_record_layout_and_round_trip(tmp_path: Path) -> None:
    data = b"hello warmup"
    record = encode_record(data)
    length = struct.pack("<Q", len(data))
    assert record == (
        length
        + struct.pack("<I", masked_crc32c(length))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )
    path = tmp_path / "records"
    assert write_records(path, [b"", data, b"\x00" * 1000]) == 3
    assert list(read_records(path)) == [b"", data, b"\x00" * 1000]


# ----- run_saved_model_warmup: TF's rules ----------------------------------------------------


def test_no_warmup_file_is_fine(version_dir: Path) -> None:
    calls: list[Any] = []
    assert run_saved_model_warmup(version_dir, WarmupOptions(), calls.append) == 0
    assert calls == []


def test_each_record_runs_num_request_iterations_times_in_order(version_dir: Path) -> None:
    write_warmup(version_dir, [predict_log(np.full((1, 1), float(i))) for i in range(3)])
    seen: list[float] = []

    def execute(log: Any) -> None:
        seen.append(log.predict_log.request.inputs["x"].float_val[0])

    options = WarmupOptions(num_request_iterations=2)
    assert run_saved_model_warmup(version_dir, options, execute) == 3
    assert seen == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]


def test_more_than_1000_records_is_invalid_argument(version_dir: Path) -> None:
    path = write_warmup(version_dir, [PredictionLog().SerializeToString()] * 1001)
    with pytest.raises(ServingError) as info:
        run_saved_model_warmup(version_dir, WarmupOptions(), lambda log: None)
    assert info.value.code == Code.INVALID_ARGUMENT
    assert info.value.message == f"Number of warmup records exceeds the maximum (1000) at {path}"


def test_exactly_1000_records_is_fine(version_dir: Path) -> None:
    write_warmup(version_dir, [PredictionLog().SerializeToString()] * 1000)
    assert run_saved_model_warmup(version_dir, WarmupOptions(), lambda log: None) == 1000


def test_corrupt_record_is_data_loss_with_tf_message(version_dir: Path) -> None:
    path = write_warmup(version_dir, [predict_log(np.ones((1, 1))), predict_log(np.ones((2, 1)))])
    first_length = len(encode_record(predict_log(np.ones((1, 1)))))
    raw = bytearray(path.read_bytes())
    raw[first_length + 14] ^= 0xFF  # a data byte of the second record
    path.write_bytes(bytes(raw))
    ran: list[Any] = []
    with pytest.raises(ServingError) as info:
        run_saved_model_warmup(version_dir, WarmupOptions(), ran.append)
    assert info.value.code == Code.DATA_LOSS
    assert info.value.message == (
        f"corrupted record at {first_length}. Please verify your warmup data is in TFRecord format."
    )
    assert len(ran) == 1  # records before the damage were replayed


def test_truncated_file_is_data_loss(version_dir: Path) -> None:
    path = write_warmup(version_dir, [predict_log(np.ones((1, 1)))])
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ServingError) as info:
        run_saved_model_warmup(version_dir, WarmupOptions(), lambda log: None)
    assert info.value.code == Code.DATA_LOSS
    assert info.value.message == (
        "truncated record at 0. Please verify your warmup data is in TFRecord format."
    )


def test_a_file_that_is_not_tfrecord_is_data_loss(version_dir: Path) -> None:
    path = warmup_requests_path(version_dir)
    path.parent.mkdir(parents=True)
    path.write_text('{"instances": [[1.0]]}\n')  # a common mistake: JSON instead of TFRecord
    with pytest.raises(ServingError) as info:
        run_saved_model_warmup(version_dir, WarmupOptions(), lambda log: None)
    assert info.value.code == Code.DATA_LOSS
    assert info.value.message.endswith("Please verify your warmup data is in TFRecord format.")


def test_unparsable_record_is_invalid_argument(version_dir: Path) -> None:
    path = write_warmup(version_dir, [b"\xff\xff\xff"])
    with pytest.raises(ServingError) as info:
        run_saved_model_warmup(version_dir, WarmupOptions(), lambda log: None)
    assert info.value.code == Code.INVALID_ARGUMENT
    assert info.value.message == f"Failed to parse warmup record: b'\\xff\\xff\\xff' from {path}"


# ----- replay inside OnnxLoader.load -----------------------------------------------------------


def test_load_replays_the_warmup_file_before_returning(
    version_dir: Path, run_log: list[dict[str, np.ndarray]]
) -> None:
    write_warmup(
        version_dir,
        [
            predict_log(np.array([[1.0], [2.0]])),
            regress_log([3.0]),
            PredictionLog().SerializeToString(),
        ],
    )
    loader = OnnxLoader(str(version_dir), warmup=WarmupOptions(num_request_iterations=2))
    loader.load()
    # The predict and regress records twice each; a record without a log type is skipped.
    assert [feeds["x"].ravel().tolist() for feeds in run_log] == [[1.0, 2.0]] * 2 + [[3.0]] * 2
    assert isinstance(loader.servable(), OnnxServable)


def test_disabled_warmup_runs_nothing(
    version_dir: Path, run_log: list[dict[str, np.ndarray]]
) -> None:
    write_warmup(version_dir, [predict_log(np.ones((1, 1)))])
    OnnxLoader(str(version_dir), warmup=WarmupOptions(enabled=False)).load()
    assert run_log == []


@pytest.mark.parametrize(
    ("record", "code", "message"),
    [
        (
            predict_log(np.ones((1, 1)), input_name="nope"),
            Code.INVALID_ARGUMENT,
            "Signature input alias: x(feed name: x) not found in request",
        ),
        (
            predict_log(np.ones((1, 1)), signature="missing"),
            Code.FAILED_PRECONDITION,
            'Serving signature key "missing" not found.',
        ),
        (
            PredictionLog(session_run_log=prediction_log_pb2.SessionRunLog()).SerializeToString(),
            Code.UNIMPLEMENTED,
            "Unsupported log_type for warmup: 5",
        ),
        (
            PredictionLog(
                predict_streamed_log=prediction_log_pb2.PredictStreamedLog()
            ).SerializeToString(),
            Code.UNIMPLEMENTED,
            "Unsupported log_type for warmup: 7",
        ),
    ],
    ids=["unknown-input", "unknown-signature", "session-run-log", "predict-streamed-log"],
)
def test_a_failing_record_fails_the_load_and_holds_nothing(
    version_dir: Path, record: bytes, code: Code, message: str
) -> None:
    write_warmup(version_dir, [record])
    loader = OnnxLoader(str(version_dir))
    with pytest.raises(ServingError) as info:
        loader.load()
    assert info.value.code == code
    assert message in info.value.message
    with pytest.raises(FailedPrecondition):
        loader.servable()


# ----- servingd-make-warmup ------------------------------------------------------------------


def test_tool_writes_a_file_the_load_replays(
    version_dir: Path,
    tmp_path: Path,
    run_log: list[dict[str, np.ndarray]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "rows.json").write_text(json.dumps({"instances": [[1.5], [2.5]]}))
    (tmp_path / "lines.jsonl").write_text('{"inputs": {"x": [[4.0]]}}\n\n{"inputs": [[5.0]]}\n')
    np.savez(tmp_path / "arrays.npz", x=np.array([[6.0]], dtype=np.float32))
    examples = [str(tmp_path / n) for n in ("rows.json", "lines.jsonl", "arrays.npz")]
    assert make_warmup.main([f"--model_dir={version_dir}", *examples]) == 0
    path = warmup_requests_path(version_dir)
    assert capsys.readouterr().out == f"Wrote 4 warmup record(s) to {path}\n"
    logs = [PredictionLog.FromString(r) for r in read_records(path)]
    assert {log.predict_log.request.model_spec.name for log in logs} == {"half_plus_two"}
    run_log.clear()  # the tool ran each example once to check it

    OnnxLoader(str(version_dir)).load()

    inputs = [feeds["x"].ravel().tolist() for feeds in run_log]
    assert inputs == [[1.5, 2.5], [4.0], [5.0], [6.0]]


def test_tool_refuses_an_example_the_model_rejects(
    version_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.savez(tmp_path / "bad.npz", x=np.ones((1, 1), dtype=np.float64))
    assert make_warmup.main([f"--model_dir={version_dir}", str(tmp_path / "bad.npz")]) == 1
    assert capsys.readouterr().err == (
        f"servingd-make-warmup: {tmp_path / 'bad.npz'}: Expects input 'x' to be float but "
        "double is provided\n"
    )
    assert not warmup_requests_path(version_dir).exists()
