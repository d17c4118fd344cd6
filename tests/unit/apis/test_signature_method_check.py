"""--enable_signature_method_name_check on the one request path (Predictor), with a real
ServerCore and real ONNX models.

TF's rules (predict_util.cc, classifier.cc, regressor.cc): with the flag, Predict refuses a
signature whose method is none of predict, classify, regress (INTERNAL); without it Predict
runs any signature. Classify and Regress require their own method in servingd with the flag
or without (see servables/onnx/signature.py). The signatures servingd derives from an ONNX
graph always carry one of the three methods, so the refusal is shown on a loaded servable
whose `serving_default` was given a method servingd never writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from servingd.apis.grpc.prediction_service import PredictionService
from servingd.apis.predictor import ModelRef, Predictor
from servingd.apis.run_placement import RunPlacement
from servingd.core.status import Code, ServingError
from servingd.protos.tensorflow.core.example import example_pb2
from servingd.protos.tensorflow.core.framework import types_pb2
from servingd.protos.tensorflow_serving.apis import input_pb2, predict_pb2
from servingd.servables.onnx.signature import (
    CLASSIFY_METHOD,
    PREDICT_METHOD,
    REGRESS_METHOD,
    Signature,
    TensorSpec,
    check_predict_method,
)
from servingd.server_core import ServerCore
from servingd.testing.models import classify_and_regress, write_version
from servingd.testing.requests import classify_and_regress_predict

from ..server_core.helpers import Cores, entry, make_config, write_affine
from .servicer_context import Aborted, Context

FOREIGN_METHOD = "example/custom/method"
REFUSED = (
    "Expected prediction signature method_name to be one of {tensorflow/serving/predict, "
    f"tensorflow/serving/classify, tensorflow/serving/regress}}. Was: {FOREIGN_METHOD}"
)
# Every run counts as cheap, so the second request of a form would be planned
# (predict_plan.py) if the first one succeeded.
ALWAYS_INLINE = RunPlacement(inline_threshold_micros=10**9)


def error_of(call: Any) -> tuple[Code, str]:
    with pytest.raises(ServingError) as raised:
        call()
    return raised.value.code, raised.value.message


# ----- the rule -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", [PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD])
def test_predict_runs_predict_classify_and_regress_signatures(method: str) -> None:
    check_predict_method(Signature(method, {}, {}))  # no error


@pytest.mark.parametrize("method", [FOREIGN_METHOD, "", "tensorflow/serving/predict/"])
def test_predict_refuses_any_other_method_as_internal(method: str) -> None:
    signature = Signature(method, {"x": TensorSpec("x", np.dtype(np.float32), (-1,))}, {})
    assert error_of(lambda: check_predict_method(signature)) == (
        Code.INTERNAL,
        REFUSED.replace(FOREIGN_METHOD, method),
    )


# ----- through Predictor and the gRPC servicer (general path, then fast path) ---------------


def predict_request(rows: list[float], signature_name: str = "", **inputs: Any) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.model_spec.signature_name = signature_name
    tensor = request.inputs["x"]
    tensor.dtype = types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add().size = len(rows)
    tensor.tensor_shape.dim.add().size = 1
    tensor.tensor_content = np.array(rows, np.float32).tobytes()
    for alias, tensor_proto in inputs.items():
        request.inputs[alias].CopyFrom(tensor_proto)
    return request


def grpc_predict(service: PredictionService, request: Any) -> tuple[grpc.StatusCode | None, Any]:
    """(status code, PredictResponse or the error's details) of one Predict on the servicer."""
    context = Context()
    try:
        answer = asyncio.run(service.Predict(request.SerializeToString(), context))
    except Aborted:
        return context.code, context.details
    return grpc.StatusCode.OK, predict_pb2.PredictResponse.FromString(answer)


def y_of(response: Any) -> list[float]:
    return np.frombuffer(response.outputs["y"].tensor_content, np.float32).tolist() or list(
        response.outputs["y"].float_val
    )


@pytest.fixture
def cores() -> Iterator[Cores]:
    made = Cores()
    yield made
    made.stop_all()


@pytest.fixture
def foreign_core(cores: Cores, tmp_path: Path) -> ServerCore:
    """Model `m`, y = 0.5x + 2, whose loaded serving_default carries FOREIGN_METHOD."""
    write_affine(tmp_path / "m", 1, 0.5, 2.0)
    core = cores.create(make_config(entry("m", tmp_path / "m")))
    with core.servable_handle(core.servable_request("m", 1)) as handle:
        servable = handle.servable
        default = servable.signatures["serving_default"]
        servable.signatures = {
            **servable.signatures,
            "serving_default": dataclasses.replace(default, method_name=FOREIGN_METHOD),
        }
    return core


def service_for(core: ServerCore, check: bool) -> PredictionService:
    predictor = Predictor(
        core, None, None, None, ALWAYS_INLINE, enable_signature_method_name_check=check
    )
    return PredictionService(predictor)


def test_with_the_flag_predict_refuses_the_signature_on_every_request(
    foreign_core: ServerCore,
) -> None:
    service = service_for(foreign_core, check=True)
    request = predict_request([1.0, 2.0])

    first = grpc_predict(service, request)
    # The same bytes again: a form is planned only after the general path answered it, so
    # the fast path never answers what the check refused.
    assert service._plans.answer(request) is None
    second = grpc_predict(service, request)

    assert first == (grpc.StatusCode.INTERNAL, REFUSED)
    assert second == (grpc.StatusCode.INTERNAL, REFUSED)
    assert service._predictor._admission.in_flight() == 0


def test_with_the_flag_the_check_comes_after_the_lookup_and_before_the_inputs(
    foreign_core: ServerCore,
) -> None:
    predictor = Predictor(foreign_core, enable_signature_method_name_check=True)
    ref = ModelRef("m")

    unknown = ModelRef("m", signature_name="nope")
    wrong_inputs = {"z": np.zeros((1, 1), np.float32)}

    assert error_of(lambda: asyncio.run(predictor.predict(unknown, wrong_inputs))) == (
        Code.FAILED_PRECONDITION,
        'Serving signature key "nope" not found.',
    )
    assert error_of(lambda: asyncio.run(predictor.predict(ref, wrong_inputs))) == (
        Code.INTERNAL,
        REFUSED,
    )


def test_without_the_flag_predict_runs_the_signature_and_plans_it(
    foreign_core: ServerCore,
) -> None:
    service = service_for(foreign_core, check=False)

    code, first = grpc_predict(service, predict_request([1.0, 2.0]))
    planned = service._plans.answer(predict_request([6.0, -4.0]))

    assert code == grpc.StatusCode.OK
    assert y_of(first) == [2.5, 3.0]
    assert isinstance(planned, bytes)
    assert y_of(predict_pb2.PredictResponse.FromString(planned)) == [5.0, 0.0]


# ----- a model with classify and regress signatures -----------------------------------------


def examples() -> Any:
    message = input_pb2.Input()
    for x, k in (([1.0, 2.5], 1), ([0.5, -0.5], 3)):
        example = example_pb2.Example()
        example.features.feature["x"].float_list.value.extend(x)
        example.features.feature["k"].int64_list.value.append(k)
        example.features.feature["lang"].bytes_list.value.append(b"en")
        message.example_list.examples.append(example)
    return message


@pytest.fixture
def cr_core(cores: Cores, tmp_path: Path) -> ServerCore:
    write_version(tmp_path / "cr", 1, classify_and_regress())
    return cores.create(make_config(entry("cr", tmp_path / "cr")))


def test_with_the_flag_predict_runs_classify_and_regress_signatures(cr_core: ServerCore) -> None:
    service = service_for(cr_core, check=True)

    classify_code, classify = grpc_predict(service, classify_and_regress_predict("classify"))
    regress_code, regress = grpc_predict(service, classify_and_regress_predict("regress"))
    again_code, again = grpc_predict(service, classify_and_regress_predict("regress"))

    assert (classify_code, regress_code, again_code) == (grpc.StatusCode.OK,) * 3
    assert classify.model_spec.signature_name == "classify"
    assert sorted(classify.outputs) == ["classes", "scores"]
    assert list(classify.outputs["scores"].float_val) == [2.0, 3.5, 3.5, 2.5]  # x + k
    assert list(classify.outputs["classes"].string_val) == [b"neg", b"pos"] * 2
    assert regress.model_spec.signature_name == "regress"
    assert list(regress.outputs) == ["outputs"]
    assert list(regress.outputs["outputs"].float_val) == [3.5, 0.0]  # (x0 + x1) * k
    assert again == regress


@pytest.mark.parametrize("check", [True, False])
def test_classify_and_regress_check_their_method_with_or_without_the_flag(
    cr_core: ServerCore, check: bool
) -> None:
    predictor = Predictor(cr_core, enable_signature_method_name_check=check)

    def classify(name: str) -> Any:
        return asyncio.run(predictor.classify(ModelRef("cr", signature_name=name), examples()))

    def regress(name: str) -> Any:
        return asyncio.run(predictor.regress(ModelRef("cr", signature_name=name), examples()))

    assert error_of(lambda: classify("regress")) == (
        Code.INVALID_ARGUMENT,
        "Expected classification signature method_name to be tensorflow/serving/classify. "
        "Was: tensorflow/serving/regress",
    )
    assert error_of(lambda: regress("classify")) == (
        Code.INVALID_ARGUMENT,
        "Expected regression signature method_name to be tensorflow/serving/regress. "
        "Was: tensorflow/serving/classify",
    )
    version, key, result = classify("classify")
    assert (version, key) == (1, "classify")
    assert [[(c.label, c.score) for c in row.classes] for row in result.classifications] == [
        [("neg", 2.0), ("pos", 3.5)],
        [("neg", 3.5), ("pos", 2.5)],
    ]
    version, key, result = regress("")
    assert (version, key) == (1, "regress")
    assert [r.value for r in result.regressions] == [3.5, 0.0]
