"""V2 inference statistics (statistics.py) on a real ServerCore."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from servingd.apis.predictor import ModelRef, Predictor
from servingd.apis.v2.rest_v2 import proto_json
from servingd.apis.v2.statistics import InferenceStatistics, RequestTimer
from servingd.batching import BatchingOptions
from servingd.core.servable_state import ManagerState
from servingd.core.status import InvalidArgument, NotFound
from servingd.testing.models import two_in_two_out, write_version
from tests.unit.server_core.helpers import Cores, entry, make_config, wait_for, write_affine


@pytest.fixture
def predictor(tmp_path: Path) -> Iterator[Predictor]:
    cores = Cores()
    write_version(tmp_path / "two", 1, two_in_two_out())
    write_affine(tmp_path / "affine", 3, 2.0)
    write_affine(tmp_path / "affine", 4, 2.0)
    config = make_config(
        entry("two", tmp_path / "two"),
        entry("affine", tmp_path / "affine", "model_version_policy { all {} }"),
    )
    core = cores.create(config)
    wait_for(core, "affine", 3, ManagerState.AVAILABLE)  # startup waits for the latest only
    yield Predictor(core)
    cores.stop_all()


def timed() -> RequestTimer:
    timer = RequestTimer()
    timer.decoded()
    timer.ran(0)
    return timer


def rows(n: int) -> dict[str, np.ndarray]:
    return {"a": np.zeros((n, 3), np.float32), "b": np.zeros(n, np.int64)}


def stats(statistics: InferenceStatistics, name: str = "", version: str = "") -> list[Any]:
    return list(proto_json(statistics.model_statistics(name, version))["model_stats"])


def test_a_success_adds_one_request_and_its_stages(predictor: Predictor) -> None:
    statistics = InferenceStatistics(predictor)
    statistics.record_success("two", 1, rows(5), timed())
    (entry_,) = stats(statistics, "two")
    infer = entry_["inference_stats"]
    assert (entry_["name"], entry_["version"]) == ("two", "1")
    # Not batched (no batching options): one inference, whatever the rows.
    assert (entry_["inference_count"], entry_["execution_count"]) == (1, 1)
    assert [infer[k]["count"] for k in infer] == [1, 0, 1, 1, 1, 1, 0, 0]
    stages = ("queue", "compute_input", "compute_infer", "compute_output")
    assert infer["success"]["ns"] == sum(infer[k]["ns"] for k in stages)
    assert [b["batch_size"] for b in entry_["batch_stats"]] == [1]
    assert entry_["last_inference"] > 0


def test_the_runs_wait_is_queue_time_not_compute_infer(predictor: Predictor) -> None:
    statistics = InferenceStatistics(predictor)
    timer = RequestTimer()
    # Predict took 5 ms after 1 ms of decoding, of which its run waited 3 ms (for a batch).
    timer.start_ns -= 10_000_000
    timer.decoded_ns = timer.start_ns + 1_000_000
    timer.ran_ns, timer.queue_ns = timer.decoded_ns + 5_000_000, 3_000_000
    statistics.record_success("two", 1, rows(1), timer)
    (entry_,) = stats(statistics, "two")
    infer = entry_["inference_stats"]
    assert (infer["queue"], infer["compute_input"], infer["compute_infer"]) == (
        {"count": 1, "ns": 3_000_000},
        {"count": 1, "ns": 1_000_000},
        {"count": 1, "ns": 2_000_000},
    )
    assert infer["success"]["ns"] == 6_000_000 + infer["compute_output"]["ns"]


def test_a_batched_model_counts_its_rows_per_batch_size(predictor: Predictor) -> None:
    statistics = InferenceStatistics(predictor, BatchingOptions(max_batch_size=8))
    for n in (5, 2, 5):
        statistics.record_success("two", 1, rows(n), timed())
    (entry_,) = stats(statistics, "two", "1")
    assert (entry_["inference_count"], entry_["execution_count"]) == (12, 3)
    sizes = [(b["batch_size"], b["compute_infer"]["count"]) for b in entry_["batch_stats"]]
    assert sizes == [(2, 1), (5, 2)]


def test_a_failure_counts_against_the_version_the_request_names(predictor: Predictor) -> None:
    statistics = InferenceStatistics(predictor)
    statistics.record_failure(ModelRef("affine"), timed())  # the latest: 4
    statistics.record_failure(ModelRef("affine", version=3), timed())
    statistics.record_failure(ModelRef("affine", version=3), timed())
    statistics.record_failure(ModelRef("affine", version=9), timed())  # not served: not counted
    statistics.record_failure(ModelRef("nope"), timed())
    counts = [
        (s["version"], s["inference_stats"]["fail"]["count"], s["inference_count"])
        for s in stats(statistics, "affine")
    ]
    assert counts == [("3", 2, 0), ("4", 1, 0)]


def test_every_model_every_available_version(predictor: Predictor) -> None:
    statistics = InferenceStatistics(predictor)
    listed = [(s["name"], s["version"], s["inference_count"]) for s in stats(statistics)]
    assert listed == [("two", "1", 0), ("affine", "3", 0), ("affine", "4", 0)]


@pytest.mark.parametrize(
    ("name", "version", "error", "message"),
    [
        ("nope", "", NotFound, r"Servable not found for request: Latest\(nope\)"),
        ("affine", "5", NotFound, r"Servable not found for request: Specific\(affine, 5\)"),
        ("affine", "beta", InvalidArgument, "Unrecognized servable version label: beta"),
    ],
)
def test_unknown_models_and_versions_fail_as_model_metadata(
    predictor: Predictor, name: str, version: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        InferenceStatistics(predictor).model_statistics(name, version)
