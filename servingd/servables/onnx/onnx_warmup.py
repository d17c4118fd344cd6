"""Warmup for ONNX versions: each PredictionLog's request is run on the loading OnnxServable
through the same validation and run a client's request takes (TF's saved_model_warmup.cc).

The record's model name and version are ignored (the loading version runs it); its signature
name, inputs and output filter are used. Replays run directly on the servable, not through the
batching queues as in TF: an ONNX session has no per-batch-size state to warm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servingd.core.status import InvalidArgument, Unimplemented
from servingd.servables.onnx.example_inputs import example_inputs
from servingd.servables.onnx.onnx_servable import OnnxServable
from servingd.servables.onnx.signature import (
    CLASSIFY_METHOD,
    DEFAULT_SERVING_SIGNATURE,
    REGRESS_METHOD,
    inference_signature,
)
from servingd.servables.warmup import WarmupOptions, run_saved_model_warmup
from servingd.tensor_codec import to_ndarray


def warm_up(servable: OnnxServable, version_dir: str | Path, options: WarmupOptions) -> int:
    """Replays the version's warmup file on `servable` (when enabled); returns records read."""
    if not options.enabled:
        return 0
    return run_saved_model_warmup(version_dir, options, lambda log: replay(servable, log))


def replay(servable: OnnxServable, log: Any) -> None:
    """Runs one PredictionLog's request on `servable`, as the matching API would."""
    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        request = log.predict_log.request
        inputs = {alias: to_ndarray(tensor, alias) for alias, tensor in request.inputs.items()}
        prepared = servable.prepare(
            request.model_spec.signature_name, inputs, list(request.output_filter)
        )
        servable.run(prepared)
    elif kind in ("classify_log", "regress_log"):
        request = getattr(log, kind).request
        method = CLASSIFY_METHOD if kind == "classify_log" else REGRESS_METHOD
        key, signature = inference_signature(
            servable.signatures, request.model_spec.signature_name, method
        )
        inputs, _count = example_inputs(request.input, signature.inputs)
        servable.run(servable.prepare(key, inputs))
    elif kind == "multi_inference_log":
        _replay_multi_inference(servable, log.multi_inference_log.request)
    elif kind is not None:
        number = log.DESCRIPTOR.fields_by_name[kind].number
        raise Unimplemented(f"Unsupported log_type for warmup: {number}")
    # A record without a log type holds no request: TF skips it.


def _replay_multi_inference(servable: OnnxServable, request: Any) -> None:
    # One run fetching every task's outputs, as the MultiInference API does.
    outputs: set[str] = set()
    signature = None
    for task in request.tasks:
        if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
            raise Unimplemented(f"Unsupported signature method_name: {task.method_name}")
        _key, signature = inference_signature(
            servable.signatures, task.model_spec.signature_name, task.method_name
        )
        outputs.update(spec.name for spec in signature.outputs.values())
    if signature is None:
        raise InvalidArgument("MultiInferenceRequest has no tasks")
    inputs, _count = example_inputs(request.input, signature.inputs)
    servable.run(servable.prepare(DEFAULT_SERVING_SIGNATURE, inputs, sorted(outputs)))
