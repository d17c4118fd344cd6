"""OnnxServable: one loaded ONNX version; validates requests against its signatures and runs them.

Validation follows TF Serving's predict_util (same checks, same codes, the same message
texts where clients or tests match on them), and happens before anything runs, so a bad
request never reaches onnxruntime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from servingd.core.status import FailedPrecondition, Internal, InvalidArgument
from servingd.servables.onnx.signature import DEFAULT_SERVING_SIGNATURE, Signature, TensorSpec


@dataclass(frozen=True, slots=True)
class PreparedRun:
    """A validated request: what to feed (by graph name) and which outputs to fetch."""

    signature_name: str
    feeds: dict[str, np.ndarray]
    output_aliases: tuple[str, ...]
    output_names: tuple[str, ...]

    @property
    def batch_size(self) -> int:
        first = next(iter(self.feeds.values()), None)
        return int(first.shape[0]) if first is not None and first.ndim > 0 else 0


class OnnxServable:
    """What OnnxLoader.servable() returns. Thread-safe: onnxruntime sessions allow
    concurrent `run` calls, and everything else here is immutable after construction."""

    def __init__(self, session: Any, signatures: Mapping[str, Signature]) -> None:
        self._session = session
        # onnxruntime's compiled session, past the Python wrapper's per-call checks (input
        # names, OrtValue ownership, graph capture), which validation here already covers
        # for the numpy feeds servingd passes; a session without one is called as it is.
        self.run_graph: Any = getattr(session, "_sess", session).run
        self.signatures: Mapping[str, Signature] = signatures

    def signature(self, name: str) -> Signature:
        """The named signature; TF answers FAILED_PRECONDITION for an unknown key in Predict."""
        key = name or DEFAULT_SERVING_SIGNATURE
        signature = self.signatures.get(key)
        if signature is None:
            raise FailedPrecondition(f'Serving signature key "{key}" not found.')
        return signature

    def prepare(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
    ) -> PreparedRun:
        key = signature_name or DEFAULT_SERVING_SIGNATURE
        signature = self.signature(key)
        _check_input_names(inputs, signature)
        feeds = {}
        for alias, array in inputs.items():
            spec = signature.inputs[alias]
            feeds[spec.name] = checked_input(alias, array, spec)
        aliases = output_aliases(output_filter, signature)
        names = tuple(signature.outputs[a].name for a in aliases)
        return PreparedRun(key, feeds, aliases, names)

    def run(self, prepared: PreparedRun, run_options: Any = None) -> dict[str, np.ndarray]:
        """Runs the graph; keys of the result are output aliases. Called from worker threads.
        Setting `terminate` on `run_options` (from `new_run_options()`) from another thread
        stops the run at its next operator: what a caller that is gone no longer needs."""
        try:
            results = self.run_graph(list(prepared.output_names), prepared.feeds, run_options)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidArgument types
            raise Internal(f"Model run failed: {exc}") from exc
        return {
            alias: np.asarray(value)
            for alias, value in zip(prepared.output_aliases, results, strict=True)
        }


def new_run_options() -> Any:
    """An onnxruntime RunOptions for one `OnnxServable.run` call."""
    import onnxruntime as ort  # already loaded by any OnnxLoader; kept out of import time

    return ort.RunOptions()


def _check_input_names(inputs: Mapping[str, np.ndarray], signature: Signature) -> None:
    """TF's two checks and wordings, so clients that match on them keep working: a count
    mismatch (predict_util.cc), then an alias the request lacks (saved_model GetInputValues;
    ONNX signatures have no default inputs)."""
    sent = set(inputs)
    expected = set(signature.inputs)
    if sent == expected:
        return
    if len(sent) != len(expected):
        extra = sorted(sent - expected)
        missing = sorted(expected - sent)
        raise InvalidArgument(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
            f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}."
        )
    alias = min(expected - sent)
    raise InvalidArgument(
        f"Signature input alias: {alias}(feed name: {signature.inputs[alias].name}) not found "
        "in request and no default value provided. Inputs expected to be in the request "
        f"{{{','.join(sorted(sent))}}}, or default input alias set: "
    )


# TF's DataTypeString names where they differ from numpy's.
_TF_TYPE_NAMES = {"float32": "float", "float64": "double", "float16": "half", "object": "string"}


def _dtype_name(dtype: np.dtype[Any]) -> str:
    name = str(dtype.name)
    return _TF_TYPE_NAMES.get(name, name)


def checked_input(alias: str, array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    if spec.is_string:
        if array.dtype != np.dtype(object):
            raise InvalidArgument(
                f"Expects input '{alias}' to be string but {_dtype_name(array.dtype)} is provided"
            )
        array = _as_str_array(alias, array)
    elif array.dtype != spec.dtype:
        raise InvalidArgument(
            f"Expects input '{alias}' to be {_dtype_name(spec.dtype)} but "
            f"{_dtype_name(array.dtype)} is provided"
        )
    if spec.shape is not None and not shape_matches(array.shape, spec.shape):
        raise InvalidArgument(
            f"input '{alias}' has shape {list(array.shape)} but the signature expects "
            f"{list(spec.shape)} (-1 = any size)"
        )
    return array


def shape_matches(shape: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    return len(shape) == len(expected) and all(
        want in (-1, got) for want, got in zip(expected, shape, strict=True)
    )


def _as_str_array(alias: str, array: np.ndarray) -> np.ndarray:
    """onnxruntime takes Python str for string tensors (bytes would be fed as "b'..'")."""
    flat = array.ravel()
    try:
        decoded = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in flat]
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"input '{alias}' holds a string that is not valid UTF-8") from exc
    return np.array(decoded, dtype=object).reshape(array.shape)


def output_aliases(output_filter: Sequence[str], signature: Signature) -> tuple[str, ...]:
    if not output_filter:
        return tuple(signature.outputs)
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in signature.outputs:
            raise InvalidArgument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be "
                f"in the set {{{','.join(sorted(signature.outputs))}}}."
            )
        if alias in seen:
            raise InvalidArgument(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return tuple(output_filter)
