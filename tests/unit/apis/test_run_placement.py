"""RunPlacement: cheap runs go inline on the loop, costly or unknown ones to the thread pool."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from servingd.apis import run_placement
from servingd.apis.run_placement import RunPlacement
from servingd.servables.onnx.onnx_servable import PreparedRun


class FakeServable:
    """What RunPlacement keys its figures on: any object that can be weakly referenced."""


def prepared(rows: int = 1, signature: str = "serving_default") -> PreparedRun:
    return PreparedRun(signature, {"x": np.zeros((rows, 1), np.float32)}, ("y",), ("y",))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The CPU clock RunPlacement reads; each run advances it by `cost[0]` seconds."""
    now = [0.0]
    reads = [0]
    cost = [0.0]

    def thread_time() -> float:
        reads[0] += 1
        if reads[0] % 2 == 0:  # read before and after each run
            now[0] += cost[0]
        return now[0]

    monkeypatch.setattr(run_placement, "thread_time", thread_time)
    yield cost


def run_once(placement: RunPlacement, servable: object, run: PreparedRun) -> bool:
    inline, timed = placement.place(servable, run, lambda p, options: {"y": p.feeds["x"]})
    result = timed(run, None)
    assert result["y"] is run.feeds["x"]  # the wrapped run's answer is passed through
    return inline


def test_first_run_of_a_kind_goes_to_the_pool(clock: list[float]) -> None:
    placement = RunPlacement(inline_threshold_micros=500)
    assert run_once(placement, FakeServable(), prepared()) is False


def test_cheap_runs_go_inline_after_their_first_run(clock: list[float]) -> None:
    placement = RunPlacement(inline_threshold_micros=500)
    servable, run = FakeServable(), prepared()
    clock[0] = 20e-6
    assert [run_once(placement, servable, run) for _ in range(3)] == [False, True, True]
    assert placement.estimate_micros(servable, run) == pytest.approx(20.0)


def test_costly_runs_stay_on_the_pool(clock: list[float]) -> None:
    placement = RunPlacement(inline_threshold_micros=500)
    servable, run = FakeServable(), prepared()
    clock[0] = 5e-3
    assert [run_once(placement, servable, run) for _ in range(3)] == [False, False, False]


def test_a_kind_that_becomes_slow_moves_back_to_the_pool(clock: list[float]) -> None:
    placement = RunPlacement(inline_threshold_micros=500)
    servable, run = FakeServable(), prepared()
    clock[0] = 20e-6
    run_once(placement, servable, run)
    assert run_once(placement, servable, run) is True
    clock[0] = 10e-3  # contention, or a slower path through the model
    decisions = [run_once(placement, servable, run) for _ in range(3)]
    assert decisions == [True, False, False]  # the first slow run is seen after it ran


def test_kinds_are_kept_apart_by_batch_size_and_signature(clock: list[float]) -> None:
    placement = RunPlacement(inline_threshold_micros=500)
    servable = FakeServable()
    clock[0] = 20e-6
    run_once(placement, servable, prepared(rows=1))
    assert run_once(placement, servable, prepared(rows=1)) is True
    assert run_once(placement, servable, prepared(rows=1000)) is False
    assert run_once(placement, servable, prepared(rows=1, signature="other")) is False
    assert run_once(placement, FakeServable(), prepared(rows=1)) is False  # another version


def test_threshold_zero_sends_every_run_to_the_pool_untimed(clock: list[float]) -> None:
    placement = RunPlacement(inline_threshold_micros=0)
    servable, run = FakeServable(), prepared()

    def model_run(p: PreparedRun, options: object) -> dict[str, np.ndarray]:
        return {}

    clock[0] = 1e-6
    for _ in range(3):
        inline, timed = placement.place(servable, run, model_run)
        assert inline is False
        assert timed is model_run
    assert placement.estimate_micros(servable, run) is None


def test_a_failing_run_is_still_timed(clock: list[float]) -> None:
    placement = RunPlacement(inline_threshold_micros=500)
    servable, run = FakeServable(), prepared()

    def failing(p: PreparedRun, options: object) -> dict[str, np.ndarray]:
        raise RuntimeError("model run failed")

    clock[0] = 30e-6
    _inline, timed = placement.place(servable, run, failing)
    with pytest.raises(RuntimeError, match="model run failed"):
        timed(run, None)
    assert placement.estimate_micros(servable, run) == pytest.approx(30.0)


def test_is_cheap_tells_what_place_would_decide(clock: list[float]) -> None:
    placement = RunPlacement(inline_threshold_micros=500)
    servable, one, many = FakeServable(), prepared(1), prepared(64)
    assert placement.is_cheap(servable, one) is False  # never run: unknown
    clock[0] = 20e-6
    run_once(placement, servable, one)
    clock[0] = 5e-3
    run_once(placement, servable, many)
    assert placement.is_cheap(servable, one) is True
    assert placement.is_cheap(servable, many) is False
    assert RunPlacement(inline_threshold_micros=0).is_cheap(servable, one) is False
