"""EventBus listeners: versions per state, lifecycle log lines; the metered loader."""

from __future__ import annotations

import logging

import pytest

from servingd.core.event_bus import EventBus
from servingd.core.servable_id import ServableId
from servingd.core.servable_state import ManagerState, ServableState
from servingd.core.status import Cancelled, NotFound
from servingd.monitoring.lifecycle_log import LifecycleLog
from servingd.monitoring.metrics import ServingMetrics
from servingd.monitoring.state_metrics import MeteredLoader, StateMetrics
from tests.unit.core.fakes import FakeLoader

A1, A2, B7 = ServableId("a", 1), ServableId("a", 2), ServableId("b", 7)


def publish(bus: EventBus[ServableState], sid: ServableId, *states: ManagerState) -> None:
    for state in states:
        bus.publish(ServableState(sid, state))


def test_versions_per_state_gauge() -> None:
    bus: EventBus[ServableState] = EventBus()
    metrics = ServingMetrics()
    StateMetrics(bus, metrics)
    publish(bus, A1, ManagerState.START, ManagerState.LOADING, ManagerState.AVAILABLE)
    publish(bus, A2, ManagerState.START, ManagerState.LOADING)
    publish(bus, B7, ManagerState.START)
    bus.publish(ServableState(B7, ManagerState.END, NotFound("gone")))

    points = dict(metrics.model_versions.points())

    assert {k: v for k, v in points.items() if v} == {
        ("a", "AVAILABLE"): 1,
        ("a", "LOADING"): 1,
        ("b", "END"): 1,
    }
    assert len(points) == 10  # five states for each model, zeros included


def test_lifecycle_lines_carry_their_fields(caplog: pytest.LogCaptureFixture) -> None:
    bus: EventBus[ServableState] = EventBus()
    LifecycleLog(bus)
    with caplog.at_level(logging.INFO, logger="servingd.lifecycle"):
        publish(bus, A1, ManagerState.START, ManagerState.LOADING, ManagerState.AVAILABLE)
        publish(bus, A1, ManagerState.UNLOADING, ManagerState.END)
        publish(bus, B7, ManagerState.START, ManagerState.LOADING)
        bus.publish(ServableState(B7, ManagerState.END, NotFound("No model.onnx")))
        bus.publish(ServableState(A2, ManagerState.END, Cancelled("Loading cancelled")))

    records = [r for r in caplog.records if r.name == "servingd.lifecycle"]
    events = [(r.event, r.model, r.version, r.state) for r in records]  # type: ignore[attr-defined]
    assert events == [
        ("discovered", "a", 1, "START"),
        ("loading", "a", 1, "LOADING"),
        ("available", "a", 1, "AVAILABLE"),
        ("unloading", "a", 1, "UNLOADING"),
        ("unloaded", "a", 1, "END"),
        ("discovered", "b", 7, "START"),
        ("loading", "b", 7, "LOADING"),
        ("failed", "b", 7, "END"),
        ("cancelled", "a", 2, "END"),
    ]
    available = records[2]
    load_ms = available.load_ms  # type: ignore[attr-defined]
    assert load_ms >= 0
    # TF Serving's wording, so that what its users grep for matches.
    assert [r.getMessage() for r in records] == [
        "Starting to manage servable version {name: a version: 1}",
        "Loading servable version {name: a version: 1}",
        f"Successfully loaded servable version {{name: a version: 1}} in {load_ms:.0f} ms",
        "Unloading servable version {name: a version: 1}",
        "Done unloading servable version {name: a version: 1}",
        "Starting to manage servable version {name: b version: 7}",
        "Loading servable version {name: b version: 7}",
        "Encountered an error for servable version {name: b version: 7}: NOT_FOUND: No model.onnx",
        "Encountered an error for servable version {name: a version: 2}: CANCELLED: "
        "Loading cancelled",
    ]
    assert [r.levelname for r in records] == ["INFO"] * 7 + ["WARNING", "INFO"]
    failed, cancelled = records[7], records[8]
    assert (failed.error_code, failed.error) == ("NOT_FOUND", "No model.onnx")  # type: ignore[attr-defined]
    assert (cancelled.error_code, cancelled.error) == ("CANCELLED", "Loading cancelled")  # type: ignore[attr-defined]
    assert not any(hasattr(r, "load_ms") for r in records[:2] + records[3:])
    assert not any(hasattr(r, "error") for r in records[:7])


def test_a_version_dropped_before_loading_is_not_called_unloaded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus: EventBus[ServableState] = EventBus()
    log = LifecycleLog(bus)
    with caplog.at_level(logging.INFO, logger="servingd.lifecycle"):
        publish(bus, A1, ManagerState.START, ManagerState.END)
        # Managed again after its END: a new life, logged from the start.
        publish(bus, A1, ManagerState.START, ManagerState.LOADING, ManagerState.AVAILABLE)
        publish(bus, A1, ManagerState.UNLOADING, ManagerState.END)
        log.close()
        publish(bus, A2, ManagerState.START)

    records = [r for r in caplog.records if r.name == "servingd.lifecycle"]
    assert [(r.event, r.getMessage()) for r in records if r.state == "END"] == [  # type: ignore[attr-defined]
        ("unloaded", "Stopped managing servable version {name: a version: 1} before loading it"),
        ("unloaded", "Done unloading servable version {name: a version: 1}"),
    ]
    assert len(records) == 7  # nothing after close()


def test_metered_loader_counts_each_attempt_by_path() -> None:
    metrics = ServingMetrics()
    failing = MeteredLoader(FakeLoader(error=NotFound("missing")), "/m/1", metrics)
    with pytest.raises(NotFound):
        failing.load()
    loader = FakeLoader()
    metered = MeteredLoader(loader, "/m/2", metrics)
    metered.load()

    assert dict(metrics.load_attempt_count.points()) == {
        ("/m/1", "fail"): 1,
        ("/m/2", "success"): 1,
    }
    ((path,), microseconds), *rest = metrics.load_latency.points()
    assert (path, rest) == ("/m/2", [])
    assert microseconds >= 0
    assert metered.servable() is loader.servable()
    assert metered.estimate_resources() == loader.estimate_resources()
    metered.unload()
