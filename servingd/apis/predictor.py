"""The one transport-neutral request path: resolve the servable, validate, run.

gRPC, REST and V2 handlers convert their messages into these calls and convert the
results back; validation and execution are written only here and in the servable.
Coroutines run on the server's event loop; model runs go to a thread pool, since
onnxruntime releases the GIL and a long run must never block the loop, except runs measured
cheaper than the hand-off to a thread, which run inline (run_placement.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from servingd.apis.admission import AdmissionControl
from servingd.apis.classifier import classification_result
from servingd.apis.multi_inference import multi_inference_response, output_names, plan_tasks
from servingd.apis.predict_plan import PredictPlans
from servingd.apis.regressor import regression_result
from servingd.apis.run_placement import RunPlacement
from servingd.batching import BatchingSession
from servingd.core.servable_handle import ServableHandle
from servingd.monitoring.metrics import BATCH_WAIT, QUEUE_WAIT, ServingMetrics
from servingd.monitoring.request_logger import RequestLogger
from servingd.monitoring.request_metrics import RunTiming, current_scope, run_timing
from servingd.protos.tensorflow_serving.apis import model_pb2, prediction_log_pb2
from servingd.servables.onnx import OnnxServable, Signature
from servingd.servables.onnx.example_inputs import example_inputs
from servingd.servables.onnx.onnx_servable import PreparedRun, new_run_options
from servingd.servables.onnx.signature import (
    CLASSIFY_METHOD,
    DEFAULT_SERVING_SIGNATURE,
    REGRESS_METHOD,
    check_predict_method,
    inference_signature,
)
from servingd.server_core import ServerCore
from servingd.tensor_codec import fill_tensor_proto


@dataclass(frozen=True, slots=True)
class ModelRef:
    """What a ModelSpec (or a REST URL) names."""

    name: str
    version: int | None = None
    label: str | None = None
    signature_name: str = ""

    @classmethod
    def from_model_spec(cls, spec: Any) -> ModelRef:
        choice = spec.WhichOneof("version_choice")
        return cls(
            name=spec.name,
            version=spec.version.value if choice == "version" else None,
            label=spec.version_label if choice == "version_label" else None,
            signature_name=spec.signature_name,
        )


@dataclass(frozen=True, slots=True)
class PredictResult:
    outputs: dict[str, np.ndarray]
    version: int
    signature_name: str
    # How long the run waited: for a thread or a batch before it, for the loop after it.
    wait_ns: int = 0


# Per example method: TF's API name of the run, and the PredictionLog field and type.
_EXAMPLE_CALLS: dict[str, tuple[str, str, Any]] = {
    CLASSIFY_METHOD: ("Classify", "classify_log", prediction_log_pb2.ClassifyLog),
    REGRESS_METHOD: ("Regress", "regress_log", prediction_log_pb2.RegressLog),
}


class Predictor:
    def __init__(
        self,
        core: ServerCore,
        executor: Executor | None = None,
        batching: BatchingSession | None = None,
        admission: AdmissionControl | None = None,
        placement: RunPlacement | None = None,
        *,
        enable_signature_method_name_check: bool = False,
    ) -> None:
        self._core = core
        self._executor = executor
        # Cheap runs go inline on the loop, the rest to `executor` (run_placement.py).
        self._placement = placement or RunPlacement()
        # --enable_batching: runs that can share a batch go through its queues.
        self._batching = batching
        # --max_inflight_requests_per_model; None admits everything.
        self._admission = admission or AdmissionControl(limit=0)
        # TF's flag: Predict refuses a signature whose method it does not run. Classify and
        # Regress check theirs either way (servables/onnx/signature.py says why).
        self._check_predict_method = enable_signature_method_name_check

    @property
    def core(self) -> ServerCore:
        return self._core

    def plans(self, metrics: ServingMetrics | None, as_tensor_content: bool) -> PredictPlans:
        """The gRPC Predict fast path over this Predictor's parts (predict_plan.py)."""
        return PredictPlans(
            self._core,
            self._placement,
            self._admission,
            self._batching,
            metrics,
            as_tensor_content,
        )

    def handle(self, ref: ModelRef) -> ServableHandle:
        """A handle on the version `ref` names; the caller must release it (use `with`)."""
        request = self._core.servable_request(ref.name, ref.version, ref.label)
        handle = self._core.servable_handle(request)
        scope = current_scope()
        if scope is not None:
            scope.version = handle.id.version  # the stage metrics are per version
        return handle

    @contextlib.contextmanager
    def _admitted_handle(self, ref: ModelRef) -> Iterator[ServableHandle]:
        """`handle(ref)` for an inference request, within its model's in-flight limit."""
        with self._admission.admit(ref.name), self.handle(ref) as handle:
            yield handle

    def signature(self, ref: ModelRef) -> tuple[int, Signature]:
        """The served version and the signature `ref` names (REST types JSON with it)."""
        with self.handle(ref) as handle:
            servable: OnnxServable = handle.servable
            return handle.id.version, servable.signature(ref.signature_name)

    def signatures(self, ref: ModelRef) -> tuple[int, Mapping[str, Signature]]:
        with self.handle(ref) as handle:
            servable: OnnxServable = handle.servable
            return handle.id.version, servable.signatures

    async def predict(
        self,
        ref: ModelRef,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
    ) -> PredictResult:
        with self._admitted_handle(ref) as handle:
            servable: OnnxServable = handle.servable
            if self._check_predict_method:  # after the lookup, before the inputs, as TF
                check_predict_method(servable.signature(ref.signature_name))
            prepared = servable.prepare(ref.signature_name, inputs, output_filter)
            timing = run_timing() or RunTiming()
            outputs = await self._run(servable, prepared, "Predict", timing)
            result = PredictResult(
                outputs, handle.id.version, prepared.signature_name, timing.wait_ns()
            )
            if (logger := self._sampled_logger(ref.name)) is not None:
                logger.log("predict_log", *_predict_log(ref, inputs, output_filter, result))
            return result

    async def classify(self, ref: ModelRef, input_proto: Any) -> tuple[int, str, Any]:
        """(served version, signature key run, ClassificationResult) for a tensorflow.serving
        Input; the signature rule is in servables/onnx/signature.py."""
        return await self._example_call(ref, input_proto, CLASSIFY_METHOD)

    async def regress(self, ref: ModelRef, input_proto: Any) -> tuple[int, str, Any]:
        """(served version, signature key run, RegressionResult) for a tensorflow.serving Input."""
        return await self._example_call(ref, input_proto, REGRESS_METHOD)

    async def _example_call(
        self, ref: ModelRef, input_proto: Any, method: str
    ) -> tuple[int, str, Any]:
        """Classify or Regress (`method`): examples in, one run, the method's result out."""
        api, log_field, log_type = _EXAMPLE_CALLS[method]
        with self._admitted_handle(ref) as handle:
            servable: OnnxServable = handle.servable
            key, signature = inference_signature(servable.signatures, ref.signature_name, method)
            inputs, count = _counted(example_inputs(input_proto, signature.inputs))
            outputs = await self._run(servable, servable.prepare(key, inputs), api, run_timing())
            if method == CLASSIFY_METHOD:
                result = classification_result(outputs, count)
            else:
                result = regression_result(outputs["outputs"], count)
            if (logger := self._sampled_logger(ref.name)) is not None:
                log = log_type()
                _fill_log(log, ref, input_proto, handle.id.version, key, result)
                logger.log(log_field, log, log.response.model_spec)
            return handle.id.version, key, result

    async def multi_inference(self, request: Any) -> Any:
        """MultiInferenceResponse for a MultiInferenceRequest (rules in multi_inference.py)."""
        first = request.tasks[0].model_spec if request.tasks else None
        ref = ModelRef.from_model_spec(first) if first is not None else ModelRef("")
        with self._admitted_handle(ref) as handle:
            servable: OnnxServable = handle.servable
            plan = plan_tasks(request.tasks, servable.signatures)
            inputs, count = _counted(example_inputs(request.input, plan[0].signature.inputs))
            # Every derived signature shares serving_default's inputs, and serving_default
            # names each graph output by itself: one run fetches what all the tasks need.
            prepared = servable.prepare(DEFAULT_SERVING_SIGNATURE, inputs, output_names(plan))
            outputs = await self._run(servable, prepared, "MultiInference", run_timing())
            response = multi_inference_response(plan, outputs, count, handle.id.version)
            if (logger := self._sampled_logger(ref.name)) is not None:
                log = prediction_log_pb2.MultiInferenceLog(request=request, response=response)
                logger.log("multi_inference_log", log, _served_spec(ref.name, handle.id.version))
            return response

    def _sampled_logger(self, model_name: str) -> RequestLogger | None:
        """The model's request logger when this request is sampled (TF's logging_config)."""
        logger = self._core.request_logger.logger(model_name)
        return logger if logger is not None and logger.sample() else None

    async def _run(
        self, servable: OnnxServable, prepared: PreparedRun, api: str, timing: RunTiming | None
    ) -> dict[str, Any]:
        """Runs the model; `api` names the call in TF's runtime_latency metric, `timing`
        (run_timing(): None unless the request is metered) learns the run's checkpoints."""
        if self._batching is not None and self._batching.accepts(servable, prepared):
            outputs = await self._batching.run(servable, prepared, timing)
            if timing is not None:
                timing.record(api, BATCH_WAIT)
            return outputs
        run = servable.run if timing is None else functools.partial(timing.call, servable.run)
        inline, run = self._placement.place(servable, prepared, run)
        if inline:  # cheaper than the hand-off to a thread; too short to need cancelling
            outputs = run(prepared, None)
            if timing is not None:
                timing.record(api, QUEUE_WAIT)
            return outputs
        loop = asyncio.get_running_loop()
        run_options = new_run_options()
        try:
            outputs = await loop.run_in_executor(self._executor, run, prepared, run_options)
            if timing is not None:
                timing.record(api, QUEUE_WAIT)
            return outputs
        except asyncio.CancelledError:
            # The caller is gone (its deadline passed, it cancelled, or shutdown cut it off):
            # a queued run was dequeued with the future; a running one stops at its next op.
            run_options.terminate = True
            raise


def _counted(inputs_and_count: tuple[dict[str, np.ndarray], int]) -> tuple[dict[str, Any], int]:
    """example_inputs' result, its example count noted for TF's request_example_counts."""
    scope = current_scope()
    if scope is not None:
        scope.examples = inputs_and_count[1]
    return inputs_and_count


# ----- request logging: the PredictionLog records of logging_config ----------------------------


def _requested_spec(ref: ModelRef) -> Any:
    spec = model_pb2.ModelSpec(name=ref.name, signature_name=ref.signature_name)
    if ref.version is not None:
        spec.version.value = ref.version
    elif ref.label:
        spec.version_label = ref.label
    return spec


def _served_spec(name: str, version: int, signature_name: str = "") -> Any:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature_name)
    spec.version.value = version
    return spec


def _predict_log(
    ref: ModelRef,
    inputs: Mapping[str, np.ndarray],
    output_filter: Sequence[str],
    result: PredictResult,
) -> tuple[Any, Any]:
    """(PredictLog, the served ModelSpec); tensors as tensor_content, the compact form."""
    log = prediction_log_pb2.PredictLog()
    request, response = log.request, log.response
    request.model_spec.CopyFrom(_requested_spec(ref))
    for alias, array in inputs.items():
        fill_tensor_proto(request.inputs[alias], array, as_tensor_content=True)
    request.output_filter.extend(output_filter)
    response.model_spec.CopyFrom(_served_spec(ref.name, result.version, result.signature_name))
    for alias, array in result.outputs.items():
        fill_tensor_proto(response.outputs[alias], array, as_tensor_content=True)
    return log, response.model_spec


def _fill_log(
    log: Any, ref: ModelRef, input_proto: Any, version: int, key: str, result: Any
) -> None:
    """A ClassifyLog or RegressLog: the request as sent, the response as answered."""
    log.request.model_spec.CopyFrom(_requested_spec(ref))
    log.request.input.CopyFrom(input_proto)
    log.response.model_spec.CopyFrom(_served_spec(ref.name, version, key))
    log.response.result.CopyFrom(result)
