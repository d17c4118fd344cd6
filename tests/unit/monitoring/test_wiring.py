"""Metrics and request logs through the real layers, in process: ServerCore (load, warmup,
version-state metrics; logging_config), Predictor (stages, runtime latency, request logs)
and BatchingSession (TF's batching metrics)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from servingd.apis.predictor import ModelRef, Predictor
from servingd.batching import BatchingOptions, BatchingSession
from servingd.core.status import Code, ServingError
from servingd.monitoring.metrics import ServingMetrics
from servingd.monitoring.request_metrics import RequestScope
from servingd.protos.tensorflow_serving.apis import input_pb2, prediction_log_pb2
from servingd.servables.tfrecord import read_records, write_records
from servingd.servables.warmup import warmup_requests_path
from servingd.server_core import ServerCore
from servingd.tensor_codec import to_ndarray
from servingd.testing.models import affine, classify_and_regress, write_version
from tests.unit.server_core.helpers import WAIT_SECONDS, entry, make_config, options


@pytest.fixture
def cores() -> Iterator[list[ServerCore]]:
    made: list[ServerCore] = []
    yield made
    for core in made:
        core.stop(timeout_seconds=WAIT_SECONDS)


def create(cores: list[ServerCore], config: Any, metrics: ServingMetrics | None) -> ServerCore:
    core = ServerCore.create(config, options(), metrics=metrics)
    cores.append(core)
    return core


def totals(sampler: Any) -> dict[tuple[str, ...], int]:
    return {labels: sum(buckets) for labels, (buckets, _sum) in sampler.points()}


def read_logs(directory: Path, prefix: str = "") -> list[Any]:
    logs = []
    for path in sorted(directory.glob(f"{prefix}*.tfrecord")):
        for data in read_records(path):
            logs.append(prediction_log_pb2.PredictionLog.FromString(data))
    return logs


def test_load_warmup_and_state_metrics(cores: list[ServerCore], tmp_path: Path) -> None:
    good = write_version(tmp_path / "good", 1, affine(0.5, 2.0))
    log = prediction_log_pb2.PredictionLog()
    x = log.predict_log.request.inputs["x"]
    x.dtype, x.float_val[:] = 1, [1.0]  # DT_FLOAT
    x.tensor_shape.dim.add().size = 1
    x.tensor_shape.dim.add().size = 1
    warmup_requests_path(good).parent.mkdir()
    write_records(warmup_requests_path(good), [log.SerializeToString()])
    bad = write_version(tmp_path / "bad", 1, affine(1.0, 0.0))
    warmup_requests_path(bad).parent.mkdir()
    write_records(warmup_requests_path(bad), [b"\xff not a PredictionLog"])
    metrics = ServingMetrics()

    with pytest.raises(ServingError, match="did not become available"):
        create(cores, make_config(entry("good", good.parent), entry("bad", bad.parent)), metrics)

    assert dict(metrics.load_attempt_count.points()) == {
        (str(bad), "fail"): 1,
        (str(good), "success"): 1,
    }
    assert [labels for labels, _ in metrics.load_latency.points()] == [(str(good),)]
    warmups = totals(metrics.model_warmup_latency)
    assert warmups[(str(good), "OK")] == 1
    ((_bad_path, status),) = [k for k in warmups if k[0] == str(bad)]
    assert status.startswith("INVALID_ARGUMENT: Failed to parse warmup record")
    versions = {k: v for k, v in metrics.model_versions.points() if v}
    # Create stopped the core after the failure: both versions ended.
    assert versions == {("bad", "END"): 1, ("good", "END"): 1}


def test_predictor_stages_runtime_latency_and_version(
    cores: list[ServerCore], tmp_path: Path
) -> None:
    write_version(tmp_path / "m", 3, affine(0.5, 2.0))
    metrics = ServingMetrics()
    predictor = Predictor(create(cores, make_config(entry("m", tmp_path / "m")), metrics))

    async def call() -> Any:
        with RequestScope(metrics, "m", "Predict", "GRPC"):
            return await predictor.predict(ModelRef("m"), {"x": np.ones((2, 1), np.float32)})

    result = asyncio.run(call())
    metrics.fold_requests()

    assert result.version == 3
    assert totals(metrics.request_stage_latency) == {
        ("m", "3", "decode"): 1,
        ("m", "3", "queue_wait"): 1,
        ("m", "3", "model_run"): 1,
        ("m", "3", "encode"): 1,
    }
    assert totals(metrics.runtime_latency) == {("m", "Predict", "ONNX"): 1}
    assert dict(metrics.request_count.points()) == {("m", "OK"): 1}


def test_batching_metrics_and_batch_wait_stage(cores: list[ServerCore], tmp_path: Path) -> None:
    write_version(tmp_path / "m", 1, affine(0.5, 2.0))
    metrics = ServingMetrics()
    core = create(cores, make_config(entry("m", tmp_path / "m")), metrics)
    batching = BatchingSession(
        BatchingOptions(
            max_batch_size=4,
            batch_timeout_micros=0,
            num_batch_threads=1,
            allowed_batch_sizes=(2, 4),
            thread_pool_name="pool",
        ),
        metrics,
    )
    predictor = Predictor(core, None, batching)

    async def call(rows: int) -> Any:
        with RequestScope(metrics, "m", "Predict", "GRPC"):
            return await predictor.predict(ModelRef("m"), {"x": np.ones((rows, 1), np.float32)})

    try:
        for rows in (1, 3):
            result = asyncio.run(call(rows))
            assert result.outputs["y"].tolist() == [[2.5]] * rows
    finally:
        batching.stop()
    metrics.fold_requests()

    assert totals(metrics.input_batch_size) == {(): 2}
    # Each call ran alone: 1 row padded to 2, 3 rows padded to 4.
    ((_, (processed, _sum)),) = metrics.processed_batch_size.points()
    assert processed[:4] == [0, 0, 1, 1]  # [.., 1), [1, 2), [2, 4): the 2, [4, 8): the 4
    assert totals(metrics.padding_size) == {("2",): 1, ("4",): 1}
    assert dict(metrics.wrapped_run_count.points()) == {(): 2}
    assert totals(metrics.queuing_latency) == {("pool",): 2}
    assert totals(metrics.request_stage_latency) == {
        ("m", "1", "decode"): 2,
        ("m", "1", "batch_wait"): 2,
        ("m", "1", "model_run"): 2,
        ("m", "1", "encode"): 2,
    }


def example_input(*xs: tuple[float, float]) -> Any:
    request_input = input_pb2.Input()
    for x0, x1 in xs:
        example = request_input.example_list.examples.add()
        example.features.feature["x"].float_list.value.extend([x0, x1])
        example.features.feature["k"].int64_list.value.append(1)
        example.features.feature["lang"].bytes_list.value.append(b"en")
    return request_input


def test_logged_requests_read_back_and_replay_as_warmup(
    cores: list[ServerCore], tmp_path: Path
) -> None:
    write_version(tmp_path / "m", 1, affine(0.5, 2.0))
    write_version(tmp_path / "cr", 1, classify_and_regress())
    logs = tmp_path / "logs"
    logs.mkdir()

    def logging_config(prefix: str) -> str:
        # Models with the same logging_config share one file (TF's rule): apart here.
        return (
            "logging_config { sampling_config { sampling_rate: 1.0 } "
            f"log_collector_config {{ filename_prefix: '{logs}/{prefix}' }} }}"
        )

    config = make_config(
        entry("m", tmp_path / "m", logging_config("m")),
        entry("cr", tmp_path / "cr", logging_config("cr")),
    )
    core = create(cores, config, None)
    predictor = Predictor(core)
    xs = [np.array([[1.0]], np.float32), np.array([[2.0], [4.0]], np.float32)]

    async def calls() -> None:
        for x in xs:
            await predictor.predict(ModelRef("m", version=1), {"x": x})
        await predictor.regress(ModelRef("cr"), example_input((1.0, 2.0)))
        await predictor.classify(ModelRef("cr"), example_input((0.0, 1.0), (3.0, 3.0)))

    asyncio.run(calls())

    records = read_logs(logs, "m.") + read_logs(logs, "cr.")
    assert [r.WhichOneof("log_type") for r in records] == [
        "predict_log",
        "predict_log",
        "regress_log",
        "classify_log",
    ]
    for record, x in zip(records[:2], xs, strict=True):
        request, response = record.predict_log.request, record.predict_log.response
        assert (request.model_spec.name, request.model_spec.version.value) == ("m", 1)
        np.testing.assert_array_equal(to_ndarray(request.inputs["x"]), x)
        np.testing.assert_array_equal(to_ndarray(response.outputs["y"]), 0.5 * x + 2)
        assert record.log_metadata.model_spec.version.value == 1
        assert record.log_metadata.model_spec.signature_name == "serving_default"
    regress = records[2].regress_log
    assert [r.value for r in regress.response.result.regressions] == [3.0]
    assert regress.request.input == example_input((1.0, 2.0))
    classes = records[3].classify_log.response.result.classifications
    assert [[(c.label, c.score) for c in row.classes] for row in classes] == [
        [("neg", 1.0), ("pos", 2.0)],
        [("neg", 4.0), ("pos", 4.0)],
    ]
    # The log of `m` is a warmup file for a new version of `m`.
    (log_file,) = logs.glob("m.*.tfrecord")
    version_2 = write_version(tmp_path / "m", 2, affine(1.0, 0.0))
    warmup_requests_path(version_2).parent.mkdir()
    shutil.copy(log_file, warmup_requests_path(version_2))
    metrics = ServingMetrics()
    create(cores, make_config(entry("m2", tmp_path / "m")), metrics)
    assert totals(metrics.model_warmup_latency) == {(str(version_2), "OK"): 1}


def test_rate_zero_writes_nothing(cores: list[ServerCore], tmp_path: Path) -> None:
    write_version(tmp_path / "m", 1, affine(0.5, 2.0))
    logging_config = (
        "logging_config { sampling_config { sampling_rate: 0 } "
        f"log_collector_config {{ filename_prefix: '{tmp_path}/req' }} }}"
    )
    predictor = Predictor(
        create(cores, make_config(entry("m", tmp_path / "m", logging_config)), None)
    )

    for _ in range(20):
        asyncio.run(predictor.predict(ModelRef("m"), {"x": np.ones((1, 1), np.float32)}))

    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_a_bad_logging_config_is_refused_and_the_old_one_keeps_serving(
    cores: list[ServerCore], tmp_path: Path
) -> None:
    write_version(tmp_path / "m", 1, affine(0.5, 2.0))
    core = create(cores, make_config(entry("m", tmp_path / "m")), None)
    no_collector = "logging_config { sampling_config { sampling_rate: 1.0 } }"

    with pytest.raises(ServingError) as info:
        core.reload_config(make_config(entry("m", tmp_path / "m", no_collector)))

    assert info.value.code is Code.INVALID_ARGUMENT
    assert info.value.message.startswith(
        "Model m: logging_config: log_collector_config.filename_prefix is empty"
    )
    assert core.request_logger.logger("m") is None
    assert core.config == make_config(entry("m", tmp_path / "m"))
