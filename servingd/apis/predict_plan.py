"""PredictPlans: the common gRPC Predict answered without repeating what an earlier one found.

Every Predict of one *form* (the same ModelSpec bytes and output filter) asks the general
path (Predictor.predict) the same questions: which version serves it, which signature, what
the inputs must look like, what the outputs are called, where the run should happen. After
the general path answered a form, a plan records those answers, and a later request of the
form only does what depends on its own tensors: their dtype, shape and byte counts are
checked against the plan, the run goes inline on the event loop (or, with --enable_batching,
through the batching queue as on the general path), and the answer is written as
PredictResponse bytes. On a one-float model this is most of servingd's own cost per request
(bench/README.md).

There is no second validator here, and no error message of its own: the plan only skips
work whose outcome the general path already reached for this form. Whatever the plan does
not cover goes back to the general path (None before anything ran), which then answers or
fails exactly as before: another version in the serving map, a string or bool tensor, a
label that moved, request logging, a run not known to be cheap, a tensor that fails a check,
the in-flight limit, a batched run with metrics on. Only the run can fail here, with
OnnxServable.run's error, or the batching queue's for a batched run.

Plans hold weak references to the serving-map entry they use, so they never keep an
unloaded version's session alive; the map object itself is compared by identity (a new map
means something loaded or unloaded, and the plan re-checks its entry).
"""

from __future__ import annotations

import math
import sys
import weakref
from collections.abc import Awaitable, Hashable
from dataclasses import dataclass, field
from time import perf_counter_ns, thread_time
from typing import Any

import numpy as np

from servingd.apis.admission import AdmissionControl
from servingd.apis.run_placement import RunPlacement, run_kind
from servingd.batching import BatchingSession
from servingd.core.manager import ServableRequest
from servingd.core.serving_map import ServingEntry, ServingMap
from servingd.core.status import Code, Internal, ServingError
from servingd.monitoring.metrics import QUEUE_WAIT, RequestBuffer, ServingMetrics
from servingd.monitoring.request_metrics import FOLD_EVERY, RequestCells
from servingd.protos.tensorflow_serving.apis import model_pb2
from servingd.servables.onnx import OnnxServable
from servingd.servables.onnx.onnx_servable import PreparedRun, output_aliases, shape_matches
from servingd.server_core import ServerCore
from servingd.tensor_codec import numpy_dtype, tensor_proto_bytes, to_ndarray, varint

MAX_PLANS = 256  # forms remembered; more forms than this take the general path
MAX_SHAPES = 64  # shapes remembered per input and per output
TIME_EVERY = 8  # inline runs between two CPU-time samples for RunPlacement (a syscall each)
_FAST_KINDS = frozenset("fiu")  # numpy kinds whose tensor_content is the array's own bytes
# Types whose typed field (float_val, double_val) is packed little-endian: the array's bytes.
_RAW_TYPED = frozenset({np.dtype(np.float32), np.dtype(np.float64)})

# The PredictResponse field keys: outputs (1, a map entry) and model_spec (2); in a map
# entry the key (1) and the TensorProto value (2).
_OUTPUTS_KEY = b"\x0a"
_MODEL_SPEC_KEY = b"\x12"
_ENTRY_KEY = b"\x0a"
_ENTRY_VALUE = b"\x12"


@dataclass(slots=True)
class _Input:
    alias: str
    feed_name: str
    dtype_enum: int
    dtype: np.dtype[Any]
    shape: tuple[int, ...] | None  # the signature's; -1 = any size, None = any rank
    # Serialized TensorShapeProtos that passed the checks -> (shape, element count).
    shapes: dict[bytes, tuple[tuple[int, ...], int]] = field(default_factory=dict)


@dataclass(slots=True)
class _Output:
    alias: str
    # The array dtype whose encoding ends with the array's own bytes (None: encode in full).
    raw_dtype: np.dtype[Any] | None
    # Per answer shape: the response bytes of this output up to its values.
    heads: dict[tuple[int, ...], bytes] = field(default_factory=dict)


@dataclass(slots=True)
class PredictPlan:
    model_name: str
    label: str  # re-resolved per request: a label may move to another version on reload
    servable_request: ServableRequest
    inputs: tuple[_Input, ...]
    signature_name: str
    output_names: tuple[str, ...]  # what the run fetches, in the order of `outputs`
    output_aliases: tuple[str, ...]
    batched: bool  # runs go through the batching queue (--enable_batching)
    outputs: tuple[_Output, ...]
    model_spec_field: bytes  # the answer's model_spec, serialized with its field key
    entry: weakref.ref[ServingEntry]
    serving_map: weakref.ref[ServingMap]
    cells: RequestBuffer | None  # where a success's timings go, when metrics are on
    run_costs: dict[Hashable, float]  # RunPlacement's averages for the servable, by kind
    runs: int = 0


class PredictPlans:
    """Owned by the gRPC PredictionService; used from the event-loop thread only."""

    def __init__(
        self,
        core: ServerCore,
        placement: RunPlacement,
        admission: AdmissionControl,
        batching: BatchingSession | None,
        metrics: ServingMetrics | None,
        as_tensor_content: bool,
    ) -> None:
        self._core = core
        self._placement = placement
        self._admission = admission
        self._batching = batching
        self._metrics = metrics
        self._as_tensor_content = as_tensor_content
        self._plans: dict[Hashable, PredictPlan] = {}  # by _form
        self._basic = core.manager.basic_manager  # whose serving_map is the live snapshot

    def answer(self, request: Any) -> bytes | Awaitable[bytes | None] | None:
        """The serialized PredictResponse, or None: the general path must answer. A run that
        goes through the batching queue gives an awaitable of either instead."""
        start = perf_counter_ns()
        form = _form(request)
        plan = self._plans.get(form)
        if plan is None:
            return None
        feeds = self._feeds(plan, request.inputs)
        if feeds is None:
            return None
        entry = self._entry(plan, form)
        if entry is None:
            return None
        first = next(iter(feeds.values()), None)
        batch = first.shape[0] if first is not None and first.ndim else 0  # as PreparedRun's
        if plan.batched:
            return None if batch <= 0 else self._batched(plan, entry, feeds)
        kind = run_kind(plan.signature_name, plan.output_names, batch)
        # RunPlacement's rule, read from its live averages: inline only what is known cheap.
        if not self._placement.runs_inline(plan.run_costs.get(kind)):
            return None
        name = plan.model_name
        if self._admission.try_acquire(name):
            return None  # refused: the general path raises the error
        try:
            hold = entry.try_hold()
            if hold is None:
                return None
            try:
                servable: OnnxServable = entry.servable
                run_start = perf_counter_ns()
                plan.runs += 1
                timed = plan.runs % TIME_EVERY == 1
                cpu = thread_time() if timed else 0.0
                try:
                    results = servable.run_graph(plan.output_names, feeds, None)
                except Exception as exc:  # onnxruntime's Fail / InvalidArgument types
                    raise Internal(f"Model run failed: {exc}") from exc
                if timed:
                    self._placement.record(servable, kind, thread_time() - cpu)
                run_end = perf_counter_ns()
            finally:
                entry.release_hold(hold)
        except ServingError as exc:
            self._count_error(name, exc.code)
            raise
        finally:
            self._admission.release(name)
        answer = self._response(plan, results)
        cells = plan.cells
        if cells is not None:
            end = perf_counter_ns()
            run = run_end - run_start
            # An inline run waits for nothing: queue_wait is observed as ~0 (1 ns).
            cells.pending.append((end - start, run, run_start - start, 1, run, end - run_end))
            if len(cells.pending) >= FOLD_EVERY:
                cells.fold()
        return answer

    async def _batched(
        self, plan: PredictPlan, entry: ServingEntry, feeds: dict[str, np.ndarray]
    ) -> bytes | None:
        """The run through the batching queue (BatchingSession.run, as the general path);
        None, as from `answer`, when the general path must answer after all."""
        assert self._batching is not None
        name = plan.model_name
        if self._admission.try_acquire(name):
            return None  # refused: the general path raises the error
        try:
            hold = entry.try_hold()
            if hold is None:
                return None
            try:
                prepared = PreparedRun(
                    plan.signature_name, feeds, plan.output_aliases, plan.output_names
                )
                outputs = await self._batching.run(entry.servable, prepared)
            finally:
                entry.release_hold(hold)
        finally:
            self._admission.release(name)
        return self._response(plan, [outputs[alias] for alias in plan.output_aliases])

    def _response(self, plan: PredictPlan, results: list[Any]) -> bytes:
        parts = []
        for output, value in zip(plan.outputs, results, strict=True):
            raw = output.raw_dtype  # set only for tensor outputs: `value` is an ndarray
            head = output.heads.get(value.shape) if raw is not None and raw == value.dtype else None
            parts.append(
                self._encode(output, np.asarray(value)) if head is None else head + value.tobytes()
            )
        parts.append(plan.model_spec_field)
        return b"".join(parts)

    def _encode(self, output: _Output, value: np.ndarray) -> bytes:
        """One output's map entry in full; remembers its head when the values end it."""
        tensor = tensor_proto_bytes(value, self._as_tensor_content)
        key = output.alias.encode()
        entry = _ENTRY_KEY + varint(len(key)) + key + _ENTRY_VALUE + varint(len(tensor)) + tensor
        encoded = _OUTPUTS_KEY + varint(len(entry)) + entry
        raw = output.raw_dtype
        if raw is not None and raw == value.dtype and value.size and len(output.heads) < MAX_SHAPES:
            values = value.tobytes()
            if encoded.endswith(values):
                output.heads[value.shape] = encoded[: -len(values)]
        return encoded

    def _feeds(self, plan: PredictPlan, tensors: Any) -> dict[str, np.ndarray] | None:
        """The request's tensors as the plan's feeds, or None where any check fails."""
        if len(tensors) != len(plan.inputs):
            return None
        feeds = {}
        for spec in plan.inputs:
            tensor = tensors.get(spec.alias)
            if tensor is None or tensor.dtype != spec.dtype_enum:
                return None
            shape_proto = tensor.tensor_shape
            known = spec.shapes.get(shape_proto.SerializeToString())
            if known is None:
                known = _checked_shape(spec, shape_proto)
                if known is None:
                    return None
            shape, count = known
            content = tensor.tensor_content  # each read copies: read once
            if content:
                if len(content) != count * spec.dtype.itemsize:
                    return None
                array = np.frombuffer(content, spec.dtype).reshape(shape)
            else:
                try:
                    array = to_ndarray(tensor, spec.alias)
                except ServingError:
                    return None
            feeds[spec.feed_name] = array
        return feeds

    def _entry(self, plan: PredictPlan, form: Hashable) -> ServingEntry | None:
        """The plan's serving-map entry while it still answers the plan's ModelSpec."""
        entry = plan.entry()
        serving_map = self._basic.serving_map
        if plan.label or serving_map is not plan.serving_map():
            request: ServableRequest | None = plan.servable_request
            if plan.label:
                try:
                    request = self._core.servable_request(plan.model_name, None, plan.label)
                except ServingError:
                    request = None
            if entry is None or request is None or serving_map.find(request) is not entry:
                self._plans.pop(form, None)  # the general path resolves the form again
                return None
            plan.serving_map = weakref.ref(serving_map)
        if self._core.request_logger.logger(plan.model_name) is not None:
            return None  # sampled logging happens on the general path
        return entry

    def learn(self, request: Any, version: int, signature_name: str) -> None:
        """Records the plan of a request the general path just answered from `version`."""
        spec = request.model_spec
        form = _form(request)
        if form in self._plans or len(self._plans) >= MAX_PLANS or sys.byteorder != "little":
            return
        choice = spec.WhichOneof("version_choice")
        label = spec.version_label if choice == "version_label" else ""
        servable_request = self._core.servable_request(
            spec.name, spec.version.value if choice == "version" else None, label or None
        )
        serving_map = self._basic.serving_map
        entry = serving_map.find(servable_request)
        if entry is None or entry.id.version != version:
            return
        servable: OnnxServable = entry.servable
        signature = servable.signature(signature_name)
        inputs = []
        for alias in request.inputs:
            tensor_spec = signature.inputs[alias]
            if tensor_spec.is_string or tensor_spec.dtype.kind not in _FAST_KINDS:
                return
            dtype_enum = request.inputs[alias].dtype
            if numpy_dtype(dtype_enum) != tensor_spec.dtype:
                return
            inputs.append(
                _Input(alias, tensor_spec.name, dtype_enum, tensor_spec.dtype, tensor_spec.shape)
            )
        output_filter = tuple(request.output_filter)
        aliases = output_aliases(output_filter, signature)
        outputs = []
        for alias in aliases:
            out_spec = signature.outputs[alias]
            raw = not out_spec.is_string and (
                out_spec.dtype in _RAW_TYPED
                or (self._as_tensor_content and out_spec.dtype.kind in _FAST_KINDS)
            )
            outputs.append(_Output(alias, out_spec.dtype if raw else None))
        served = model_pb2.ModelSpec(name=spec.name, signature_name=signature_name)
        served.version.value = version
        served_bytes = served.SerializeToString()
        metrics = self._metrics
        cells = None
        if metrics is not None:
            cells_key = (spec.name, "Predict", "GRPC", version, "Predict", QUEUE_WAIT)
            cells = metrics.request_buffers.get(cells_key)
            if cells is None:
                cells = metrics.request_buffers.setdefault(
                    cells_key, RequestCells(metrics, cells_key)
                )
        output_names = tuple(signature.outputs[a].name for a in aliases)
        batched = self._batching is not None and self._batching.accepts_signature(
            servable, signature_name, aliases
        )
        if batched and cells is not None:
            return  # the stage timings of a batched run are the general path's (RequestScope)
        self._plans[form] = PredictPlan(
            model_name=spec.name,
            label=label,
            servable_request=servable_request,
            inputs=tuple(inputs),
            signature_name=signature_name,
            output_names=output_names,
            output_aliases=aliases,
            batched=batched,
            outputs=tuple(outputs),
            model_spec_field=_MODEL_SPEC_KEY + varint(len(served_bytes)) + served_bytes,
            entry=weakref.ref(entry),
            serving_map=weakref.ref(serving_map),
            cells=cells,
            run_costs=self._placement.costs_of(servable),
        )

    def _count_error(self, model_name: str, code: Code) -> None:
        if self._metrics is not None:
            self._metrics.request_count.get_cell(model_name, code.name).increment_by(1)


def _form(request: Any) -> Hashable:
    """What requests answered by one plan share: the serialized ModelSpec, and the output
    filter when there is one (the inputs must be the signature's, whatever the form)."""
    spec = request.model_spec.SerializeToString()
    output_filter = request.output_filter
    return (spec, tuple(output_filter)) if output_filter else spec


def _checked_shape(spec: _Input, shape_proto: Any) -> tuple[tuple[int, ...], int] | None:
    """(shape, element count) of a TensorShapeProto the signature accepts, remembered for
    the next request with the same shape bytes; None when it fails a check."""
    if shape_proto.unknown_rank:
        return None
    shape = tuple(int(d.size) for d in shape_proto.dim)
    # The servable's shape rule and the codec's refusal of negative sizes, not new ones.
    if any(size < 0 for size in shape):
        return None
    if spec.shape is not None and not shape_matches(shape, spec.shape):
        return None
    count = math.prod(shape)
    if len(spec.shapes) < MAX_SHAPES:
        spec.shapes[shape_proto.SerializeToString()] = (shape, count)
    return shape, count
