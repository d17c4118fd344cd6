"""Triton's ModelConfig from a served version (model_config.py) and its REST JSON."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from servingd.apis.predictor import ModelRef, Predictor
from servingd.apis.v2.model_config import data_type, max_batch_size, model_config
from servingd.apis.v2.rest_v2 import proto_json
from servingd.batching import BatchingOptions
from servingd.core.status import NotFound
from servingd.protos.inference import grpc_service_pb2 as pb
from servingd.protos.inference import model_config_pb2 as mc
from servingd.servables.onnx import Signature, TensorSpec
from servingd.testing.models import two_in_two_out, write_version
from tests.unit.server_core.helpers import Cores, entry, make_config

F32 = np.dtype(np.float32)


def signature(*shapes: tuple[int, ...] | None) -> Signature:
    """Inputs x0.. with the given shapes; one output of shape [-1]."""
    inputs = {f"x{i}": TensorSpec(f"x{i}", F32, shape) for i, shape in enumerate(shapes)}
    return Signature("tensorflow/serving/predict", inputs, {"y": TensorSpec("y", F32, (-1,))})


@pytest.mark.parametrize(
    ("shapes", "batching", "expected"),
    [
        (((-1, 3),), BatchingOptions(max_batch_size=16), 16),
        (((-1, 3), (-1,)), BatchingOptions(max_batch_size=16), 16),
        (((-1, 3),), None, 0),  # batching off: never batched
        (((2, 3),), BatchingOptions(max_batch_size=16), 0),  # a fixed first dimension
        (((),), BatchingOptions(max_batch_size=16), 0),  # a scalar
        ((None,), BatchingOptions(max_batch_size=16), 0),  # unknown rank
        ((), BatchingOptions(max_batch_size=16), 0),  # no inputs: nothing to batch on
        (((-1,),), BatchingOptions(max_batch_size=2**40), 2**31 - 1),  # int32 field
    ],
)
def test_max_batch_size(
    shapes: tuple[tuple[int, ...] | None, ...], batching: BatchingOptions | None, expected: int
) -> None:
    assert max_batch_size(signature(*shapes), batching) == expected


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (np.bool_, "TYPE_BOOL"),
        (np.uint8, "TYPE_UINT8"),
        (np.uint64, "TYPE_UINT64"),
        (np.int8, "TYPE_INT8"),
        (np.int64, "TYPE_INT64"),
        (np.float16, "TYPE_FP16"),
        (np.float32, "TYPE_FP32"),
        (np.float64, "TYPE_FP64"),
        (object, "TYPE_STRING"),
    ],
)
def test_data_type(dtype: Any, expected: str) -> None:
    value = data_type(TensorSpec("t", np.dtype(dtype), (1,)), "t")
    assert mc.DataType.Name(value) == expected


@pytest.fixture
def predictor(tmp_path: Path) -> Iterator[Predictor]:
    cores = Cores()
    write_version(tmp_path / "two", 4, two_in_two_out())
    policy = "model_version_policy { specific { versions: 4 } }"
    core = cores.create(make_config(entry("two", tmp_path / "two", policy)))
    yield Predictor(core)
    cores.stop_all()


def test_model_config_of_a_batched_model(predictor: Predictor) -> None:
    batching = BatchingOptions(max_batch_size=8, batch_timeout_micros=250)
    config = model_config(predictor, ModelRef("two"), batching)
    assert proto_json(config) == {
        "name": "two",
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "version_policy": {"specific": {"versions": [4]}},
        "max_batch_size": 8,
        "input": [
            {"name": "a", "data_type": "TYPE_FP32", "dims": [3]},
            {"name": "b", "data_type": "TYPE_INT64", "dims": []},
        ],
        "output": [
            {"name": "doubled", "data_type": "TYPE_FP32", "dims": [3]},
            {"name": "next", "data_type": "TYPE_INT64", "dims": []},
        ],
        "dynamic_batching": {"max_queue_delay_microseconds": 250},
    }


def test_model_config_unknown_version_is_not_found(predictor: Predictor) -> None:
    with pytest.raises(NotFound, match=r"Servable not found for request: Specific\(two, 5\)"):
        model_config(predictor, ModelRef("two", version=5), None)


def test_proto_json_writes_64_bit_integers_as_numbers() -> None:
    response = pb.ModelStatisticsResponse()
    stats = response.model_stats.add(name="m", version="3", inference_count=2**63 + 1)
    stats.batch_stats.add(batch_size=4).compute_infer.ns = 7
    assert proto_json(response) == {
        "model_stats": [
            {
                "name": "m",
                "version": "3",
                "last_inference": 0,
                "inference_count": 2**63 + 1,
                "execution_count": 0,
                "batch_stats": [{"batch_size": 4, "compute_infer": {"count": 0, "ns": 7}}],
            }
        ]
    }
