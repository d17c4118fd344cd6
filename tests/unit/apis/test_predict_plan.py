"""The gRPC Predict fast path (predict_plan.py): after the general path answered a form of
request, the plan answers the same bytes; whatever the plan does not cover goes back to the
general path, and a plan never outlives, or answers for, a version that left the map."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from servingd.apis.admission import AdmissionControl
from servingd.apis.grpc.prediction_service import PredictionService
from servingd.apis.predictor import Predictor
from servingd.apis.run_placement import RunPlacement
from servingd.batching import BatchingOptions, BatchingSession
from servingd.core.servable_state import ManagerState
from servingd.core.status import Internal
from servingd.protos.tensorflow.core.framework import types_pb2
from servingd.protos.tensorflow_serving.apis import predict_pb2
from servingd.server_core import ServerCore
from servingd.testing.models import reshape_to, two_in_two_out, write_version

from ..server_core.helpers import Cores, entry, labels, make_config, wait_for, write_affine
from .servicer_context import Aborted, Context

# Every run counts as cheap, so the second request of a form is always planned (the
# threshold's own behaviour is RunPlacement's tests' business).
ALWAYS_INLINE = RunPlacement(inline_threshold_micros=10**9)


@pytest.fixture
def cores() -> Iterator[Cores]:
    made = Cores()
    yield made
    made.stop_all()


def predict_request(x: list[list[float]], *, typed: bool = False, **spec: Any) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    tensor = request.inputs["x"]
    tensor.dtype = types_pb2.DT_FLOAT
    array = np.array(x, np.float32)
    for size in array.shape:
        tensor.tensor_shape.dim.add().size = size
    if typed:
        tensor.float_val.extend(array.ravel().tolist())
    else:
        tensor.tensor_content = array.tobytes()
    return request


def call(service: PredictionService, request: Any, context: Context | None = None) -> bytes:
    """One Predict through the servicer, which takes and gives bytes."""
    predict = service.Predict(request.SerializeToString(), context or Context())  # type: ignore[arg-type]
    return asyncio.run(predict)


def planned(service: PredictionService, request: Any) -> bytes | None:
    """The plan's answer, or None where the general path would answer."""
    return service._plans.answer(request)


def parsed(answer: bytes) -> Any:
    return predict_pb2.PredictResponse.FromString(answer)


def y_of(answer: bytes | None) -> tuple[int, list[float]]:
    assert answer is not None
    response = parsed(answer)
    tensor = response.outputs["y"]
    values = tensor.float_val or np.frombuffer(tensor.tensor_content, np.float32).tolist()
    return response.model_spec.version.value, list(values)


def service_for(core: ServerCore, **kwargs: Any) -> PredictionService:
    admission = kwargs.pop("admission", None)
    predictor = Predictor(core, None, None, admission, ALWAYS_INLINE)
    return PredictionService(predictor, **kwargs)


@pytest.fixture
def affine_core(cores: Cores, tmp_path: Path) -> ServerCore:
    write_affine(tmp_path / "m", 1, 0.5, 2.0)  # y = 0.5x + 2
    return cores.create(make_config(entry("m", tmp_path / "m")))


@pytest.mark.parametrize("typed", [False, True])
@pytest.mark.parametrize("as_tensor_content", [False, True])
def test_the_plan_answers_the_bytes_the_general_path_answers(
    affine_core: ServerCore, typed: bool, as_tensor_content: bool
) -> None:
    service = service_for(affine_core, serialize_as_tensor_content=as_tensor_content)
    later = predict_request([[6.0], [-2.0], [0.0]], typed=typed)
    assert planned(service, later) is None
    first = call(service, predict_request([[2.0], [4.0]], typed=typed))  # the general path

    second = planned(service, later)

    assert second is not None
    assert y_of(first) == (1, [3.0, 4.0])
    assert y_of(second) == (1, [5.0, 1.0, 2.0])
    general = call(service_for(affine_core, serialize_as_tensor_content=as_tensor_content), later)
    assert second == general  # byte for byte, model_spec included
    assert call(service, later) == general


def test_output_filter_and_several_inputs(cores: Cores, tmp_path: Path) -> None:
    write_version(tmp_path / "m", 1, two_in_two_out())  # doubled = 2a, next = b + 1
    core = cores.create(make_config(entry("m", tmp_path / "m")))
    service = service_for(core)

    def request(a: list[list[float]], b: list[int], outputs: list[str]) -> Any:
        message = predict_pb2.PredictRequest()
        message.model_spec.name = "m"
        message.inputs["a"].dtype = types_pb2.DT_FLOAT
        message.inputs["a"].tensor_shape.dim.add().size = len(a)
        message.inputs["a"].tensor_shape.dim.add().size = 3
        message.inputs["a"].tensor_content = np.array(a, np.float32).tobytes()
        message.inputs["b"].dtype = types_pb2.DT_INT64
        message.inputs["b"].tensor_shape.dim.add().size = len(b)
        message.inputs["b"].int64_val.extend(b)
        message.output_filter.extend(outputs)
        return message

    call(service, request([[1, 2, 3]], [5], ["next"]))
    only_next_bytes = planned(service, request([[0, 0, 1]], [41], ["next"]))
    assert only_next_bytes is not None
    only_next = parsed(only_next_bytes)
    # A batch of 2 is a new kind of run for RunPlacement: the first goes to the pool.
    call(service, request([[1, 2, 3], [4, 5, 6]], [5, 6], []))
    both = planned(service, request([[1, 1, 1], [2, 2, 2]], [1, 2], []))

    assert list(only_next.outputs) == ["next"]
    assert list(only_next.outputs["next"].int64_val) == [42]
    assert both is not None
    response = parsed(both)
    assert list(response.outputs["doubled"].float_val) == [2.0] * 3 + [4.0] * 3
    assert list(response.outputs["next"].int64_val) == [2, 3]


def test_a_request_the_plan_does_not_cover_gets_the_general_paths_error(
    affine_core: ServerCore,
) -> None:
    service = service_for(affine_core)
    call(service, predict_request([[1.0]]))
    plans = service._plans

    wrong_type = predict_request([[1.0]])
    wrong_type.inputs["x"].dtype = types_pb2.DT_DOUBLE
    wrong_shape = predict_request([[1.0, 2.0]])
    short_content = predict_request([[1.0], [2.0]])
    short_content.inputs["x"].tensor_content = b"\0" * 4
    negative = predict_request([[1.0]])
    negative.inputs["x"].tensor_shape.dim[0].size = -1
    for request in (wrong_type, wrong_shape, short_content, negative):
        assert plans.answer(request) is None
    context = Context()
    with pytest.raises(Aborted):
        call(service, wrong_shape, context)
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT
    assert context.details == (
        "input 'x' has shape [1, 2] but the signature expects [-1, 1] (-1 = any size)"
    )
    # The form is still planned: a good request after the bad ones takes it.
    assert y_of(planned(service, predict_request([[8.0]]))) == (1, [6.0])


def test_a_new_latest_version_is_never_answered_by_the_old_plan(
    cores: Cores, tmp_path: Path
) -> None:
    base = tmp_path / "m"
    write_affine(base, 1, 1.0)
    core = cores.create(make_config(entry("m", base)))
    service = service_for(core)
    call(service, predict_request([[3.0]]))
    assert y_of(planned(service, predict_request([[3.0]]))) == (1, [3.0])

    write_affine(base, 2, 10.0)
    core.poll_sources_once()
    wait_for(core, "m", 2, ManagerState.AVAILABLE)

    assert planned(service, predict_request([[3.0]])) is None
    assert y_of(call(service, predict_request([[3.0]]))) == (2, [30.0])
    assert y_of(planned(service, predict_request([[3.0]]))) == (2, [30.0])  # planned again


def test_a_plan_does_not_keep_an_unloaded_version_alive(cores: Cores, tmp_path: Path) -> None:
    base = tmp_path / "m"
    write_affine(base, 1, 1.0)
    write_affine(base, 2, 2.0)
    pinned = "model_version_policy { specific { versions: 1 } }"
    core = cores.create(make_config(entry("m", base, pinned)))
    service = service_for(core)
    call(service, predict_request([[1.0]]))
    assert y_of(planned(service, predict_request([[1.0]]))) == (1, [1.0])
    with core.servable_handle(core.servable_request("m", 1)) as handle:
        servable = weakref.ref(handle.servable)

    core.reload_config(make_config(entry("m", base, pinned.replace("1", "2"))))
    core.poll_sources_once()
    wait_for(core, "m", 1, ManagerState.END)
    gc.collect()
    assert servable() is None
    assert planned(service, predict_request([[1.0]])) is None
    assert y_of(call(service, predict_request([[1.0]]))) == (2, [2.0])


def test_the_in_flight_limit_holds_on_the_plans_path(affine_core: ServerCore) -> None:
    admission = AdmissionControl(limit=1)
    service = service_for(affine_core, admission=admission)
    call(service, predict_request([[1.0]]))
    assert admission.try_acquire("m") == ""  # another request holds the only slot

    context = Context()
    with pytest.raises(Aborted):
        call(service, predict_request([[1.0]]), context)

    assert context.code == grpc.StatusCode.UNAVAILABLE
    assert "the limit is 1" in context.details
    admission.release("m")
    assert admission.in_flight() == 0
    assert planned(service, predict_request([[1.0]])) is not None


def test_a_run_that_fails_on_the_plans_path_is_internal(cores: Cores, tmp_path: Path) -> None:
    write_version(tmp_path / "m", 1, reshape_to(2))  # [n] -> [2]: fails unless n == 2
    core = cores.create(make_config(entry("m", tmp_path / "m")))
    service = service_for(core)

    def request(values: list[float]) -> Any:
        message = predict_pb2.PredictRequest()
        message.model_spec.name = "m"
        message.inputs["x"].dtype = types_pb2.DT_FLOAT
        message.inputs["x"].tensor_shape.dim.add().size = len(values)
        message.inputs["x"].tensor_content = np.array(values, np.float32).tobytes()
        return message

    call(service, request([1.0, 2.0]))
    assert planned(service, request([3.0, 4.0])) is not None
    with pytest.raises(Internal, match=r"^Model run failed: "):
        planned(service, request([1.0, 2.0, 3.0]))
    context = Context()
    with pytest.raises(Aborted):
        call(service, request([1.0, 2.0, 3.0]), context)
    assert context.code == grpc.StatusCode.INTERNAL
    assert service._predictor._admission.in_flight() == 0


def test_a_batched_form_is_planned_through_the_batching_queue(affine_core: ServerCore) -> None:
    batching = BatchingSession(BatchingOptions(max_batch_size=8, num_batch_threads=1))
    predictor = Predictor(affine_core, None, batching, None, ALWAYS_INLINE)
    service = PredictionService(predictor)
    try:
        call(service, predict_request([[2.0]]))  # the general path, learning

        async def planned_then_awaited() -> bytes:
            answer = service._plans.answer(predict_request([[6.0], [0.0]]))
            assert answer is not None and not isinstance(answer, bytes)  # queued for a batch
            return await answer

        answer = asyncio.run(planned_then_awaited())
        with pytest.raises(Aborted):  # over max_batch_size: the batching queue's own error
            call(service, predict_request([[1.0]] * 9), context := Context())
    finally:
        batching.stop()

    assert y_of(answer) == (1, [5.0, 2.0])
    assert answer == call(service_for(affine_core), predict_request([[6.0], [0.0]]))
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT
    assert predictor._admission.in_flight() == 0


def test_a_label_that_moves_is_followed_at_once(cores: Cores, tmp_path: Path) -> None:
    base = tmp_path / "m"
    write_affine(base, 1, 1.0)
    write_affine(base, 2, 2.0)
    both = "model_version_policy { all {} } "
    core = cores.create(make_config(entry("m", base, both + labels(stable=1))))
    wait_for(core, "m", 2, ManagerState.AVAILABLE)
    service = service_for(core)
    by_label = predict_request([[5.0]], version_label="stable")
    call(service, by_label)
    assert y_of(planned(service, by_label)) == (1, [5.0])

    core.reload_config(make_config(entry("m", base, both + labels(stable=2))))

    assert planned(service, by_label) is None  # the serving map did not change; the label did
    assert y_of(call(service, by_label)) == (2, [10.0])
    assert y_of(planned(service, by_label)) == (2, [10.0])
