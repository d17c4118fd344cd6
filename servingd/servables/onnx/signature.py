"""Signatures derived from an ONNX graph, in TF Serving's vocabulary.

A TF SavedModel carries SignatureDefs; an ONNX graph carries only its inputs and outputs.
`serving_default` is those inputs and outputs (aliases = graph names, dynamic dims = -1),
method `tensorflow/serving/predict`. Classify and regress signatures are added when the graph
fits TF's conventions for them (design.md decision 8), so TF Serving's Classify/Regress APIs
work on ONNX models too:

- `classify` (method tensorflow/serving/classify): every graph input, fed from the tf.Example
  feature of the same name, and the outputs `scores` (float, [batch, num_classes]) and/or
  `classes` (string or integer, [batch, num_classes]) that fit.
- `regress` (method tensorflow/serving/regress): every graph input, and `outputs` = the graph
  output `outputs`, else the only output, when it is float with one value per example.
- Both need every graph input to be float32, int64 or string (the tf.Example feature types)
  with a batch dimension.

Which signature a Classify or Regress request runs (`inference_signature`): a named signature
must exist (INVALID_ARGUMENT "No signature was found with the name: X") and have the request's
method. TF defaults an empty `signature_name` to `serving_default`; an ONNX `serving_default`
is always a predict signature, so for Classify/Regress an empty name or `serving_default`
names the model's `classify` / `regress` signature instead (as TF's estimators export their
default signature as a classification or regression one). Responses name the key that ran
(`classify`), where TF echoes the requested name defaulted to `serving_default`.

The method is checked whether or not --enable_signature_method_name_check is set, as TF did
before the flag. TF now checks it only with the flag, and without it checks the signature's
inputs and outputs instead (classifier.cc, regressor.cc): on the signatures derived here that
refuses these requests too, as INVALID_ARGUMENT, with other texts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from servingd.core.status import Internal, InvalidArgument

DEFAULT_SERVING_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
CLASSIFY_SIGNATURE = "classify"
REGRESS_SIGNATURE = "regress"

# tf.Example feature types: float_list, int64_list, bytes_list.
EXAMPLE_DTYPES = (np.dtype(np.float32), np.dtype(np.int64), np.dtype(object))

# onnxruntime's NodeArg.type strings -> numpy dtypes. Strings travel as numpy object arrays.
_ORT_TYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(bool)": np.dtype(np.bool_),
    "tensor(string)": np.dtype(object),
    "tensor(complex64)": np.dtype(np.complex64),
    "tensor(complex128)": np.dtype(np.complex128),
}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output: the graph's tensor name, its dtype, and its shape.

    `shape` is None for unknown rank; a dimension of -1 is dynamic.
    """

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...] | None

    @property
    def is_string(self) -> bool:
        return self.dtype == np.dtype(object)


@dataclass(frozen=True, slots=True)
class Signature:
    """A SignatureDef: aliases -> TensorSpec for inputs and outputs, and the method name."""

    method_name: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]


def tensor_spec_from_node_arg(node_arg: Any) -> TensorSpec:
    """Builds a TensorSpec from an onnxruntime NodeArg (name, type string, shape list)."""
    dtype = _ORT_TYPES.get(node_arg.type)
    if dtype is None:
        raise ValueError(f"tensor {node_arg.name!r} has unsupported type {node_arg.type}")
    raw_shape = node_arg.shape
    shape: tuple[int, ...] | None
    # onnxruntime reports both unknown rank and a scalar as []; only unknown rank is safe
    # to assume (it never rejects a request onnxruntime would run).
    if raw_shape is None or len(raw_shape) == 0:
        shape = None
    else:
        # Symbolic dims ('batch') and missing dims (None) are both dynamic.
        shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in raw_shape)
    return TensorSpec(name=node_arg.name, dtype=dtype, shape=shape)


def derive_signatures(
    inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> dict[str, Signature]:
    """The signatures servingd serves for a graph with these inputs and outputs."""
    input_map = {spec.name: spec for spec in inputs}
    output_map = {spec.name: spec for spec in outputs}
    signatures = {
        DEFAULT_SERVING_SIGNATURE: Signature(PREDICT_METHOD, input_map, output_map),
    }
    if not all(_fed_by_examples(spec) for spec in inputs):
        return signatures
    fitting = {k: v for k, v in output_map.items() if _fits_classify(k, v)}
    if fitting:
        signatures[CLASSIFY_SIGNATURE] = Signature(CLASSIFY_METHOD, input_map, fitting)
    regress_output = _regress_output(output_map)
    if regress_output is not None:
        signatures[REGRESS_SIGNATURE] = Signature(
            REGRESS_METHOD, input_map, {"outputs": output_map[regress_output]}
        )
    return signatures


def _regress_output(outputs: Mapping[str, TensorSpec]) -> str | None:
    """The output regress answers from: `outputs`, else the single float output."""
    if "outputs" in outputs:
        candidate = "outputs"
    elif len(outputs) == 1:
        candidate = next(iter(outputs))
    else:
        return None
    spec = outputs[candidate]
    if spec.dtype.kind != "f":
        return None
    # TF requires [batch] or [batch, 1]: one value per example.
    if spec.shape is not None and (
        len(spec.shape) > 2 or (len(spec.shape) == 2 and spec.shape[1] not in (1, -1))
    ):
        return None
    return candidate


def _fed_by_examples(spec: TensorSpec) -> bool:
    return spec.dtype in EXAMPLE_DTYPES and (spec.shape is None or len(spec.shape) >= 1)


def _fits_classify(alias: str, spec: TensorSpec) -> bool:
    if alias == "scores":
        kinds = "f"
    elif alias == "classes":
        kinds = "OiuSU"
    else:
        return False
    return spec.dtype.kind in kinds and (spec.shape is None or len(spec.shape) == 2)


_DEFAULT_FOR_METHOD = {CLASSIFY_METHOD: CLASSIFY_SIGNATURE, REGRESS_METHOD: REGRESS_SIGNATURE}
_METHOD_WORD = {CLASSIFY_METHOD: "classification", REGRESS_METHOD: "regression"}


def inference_signature_key(signatures: Mapping[str, Signature], name: str, method: str) -> str:
    """The signature key a Classify or Regress request names (rule in the module docstring);
    `method` is CLASSIFY_METHOD or REGRESS_METHOD. The key may not exist."""
    key = name or DEFAULT_SERVING_SIGNATURE
    fallback = _DEFAULT_FOR_METHOD.get(method, "")
    if key == DEFAULT_SERVING_SIGNATURE and fallback in signatures:
        default = signatures.get(key)
        if default is None or default.method_name != method:
            return fallback
    return key


# TF's Predict runs classify and regress signatures too: the method-name check refuses only
# a method outside these (predict_util.cc).
_PREDICT_METHODS = (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD)


def check_predict_method(signature: Signature) -> None:
    """Predict under --enable_signature_method_name_check: INTERNAL, as TF, since the fault
    is the model's, not the request's. derive_signatures writes only the three methods."""
    if signature.method_name not in _PREDICT_METHODS:
        raise Internal(
            "Expected prediction signature method_name to be one of "
            f"{{{', '.join(_PREDICT_METHODS)}}}. Was: {signature.method_name}"
        )


def check_inference_method(signature: Signature, method: str) -> None:
    if signature.method_name != method:
        raise InvalidArgument(
            f"Expected {_METHOD_WORD[method]} signature method_name to be {method}. "
            f"Was: {signature.method_name}"
        )


def inference_signature(
    signatures: Mapping[str, Signature], name: str, method: str
) -> tuple[str, Signature]:
    """The (key, signature) a Classify or Regress request runs, with TF's errors."""
    key = inference_signature_key(signatures, name, method)
    signature = signatures.get(key)
    if signature is None:
        raise InvalidArgument(f"No signature was found with the name: {key}")
    check_inference_method(signature, method)
    return key, signature
