"""Client values <-> TF Serving's protos, shared by GrpcClient and LocalClient."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from google.protobuf import text_format

from servingd.client.client import Example, ModelServerConfigLike, VersionStatus
from servingd.core.status import Code, InvalidArgument
from servingd.protos.tensorflow.core.example import example_pb2
from servingd.protos.tensorflow_serving.apis import get_model_status_pb2, input_pb2
from servingd.protos.tensorflow_serving.config import model_server_config_pb2
from servingd.servables.onnx import Signature, TensorSpec
from servingd.tensor_codec import numpy_dtype

_STATE_NAME = get_model_status_pb2.ModelVersionStatus.State.Name


def fill_model_spec(
    spec: Any,
    model: str,
    version: int | None = None,
    label: str | None = None,
    signature: str | None = None,
) -> None:
    spec.name = model
    if version is not None:
        spec.version.value = version
    elif label is not None:
        spec.version_label = label
    if signature is not None:
        spec.signature_name = signature


def example_proto(features: Example) -> Any:
    """A tf.Example from {name: value or list}: bytes/str -> bytes_list, float ->
    float_list, int/bool -> int64_list (numpy arrays by their dtype)."""
    example = example_pb2.Example()
    for name, value in features.items():
        values = np.asarray(value).ravel()
        feature = example.features.feature[name]
        kind = values.dtype.kind
        if kind in ("U", "S", "O"):
            feature.bytes_list.value.extend(
                v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values.tolist()
            )
        elif kind == "f":
            feature.float_list.value.extend(values.astype(np.float32).tolist())
        elif kind in ("i", "u", "b"):
            feature.int64_list.value.extend(values.astype(np.int64).tolist())
        else:
            raise InvalidArgument(f"feature {name!r} has values of unsupported type {values.dtype}")
    return example


def input_proto(examples: Sequence[Example], context: Example | None = None) -> Any:
    """A tensorflow.serving.Input: an ExampleList, or ExampleListWithContext."""
    result = input_pb2.Input()
    if context is None:
        result.example_list.examples.extend(example_proto(e) for e in examples)
    else:
        target = result.example_list_with_context
        target.examples.extend(example_proto(e) for e in examples)
        target.context.CopyFrom(example_proto(context))
    return result


def classification_arrays(result: Any) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) from a ClassificationResult."""
    rows = result.classifications
    labels = np.array([[c.label for c in row.classes] for row in rows], dtype=str)
    scores = np.array([[c.score for c in row.classes] for row in rows], dtype=np.float32)
    width = len(rows[0].classes) if len(rows) else 0
    return labels.reshape(len(rows), width), scores.reshape(len(rows), width)


def regression_values(result: Any) -> np.ndarray:
    return np.array([r.value for r in result.regressions], dtype=np.float32)


def version_statuses(response: Any) -> list[VersionStatus]:
    """From a GetModelStatusResponse, in its order (newest first)."""
    return [
        VersionStatus(
            version=s.version,
            state=_STATE_NAME(s.state),
            error_code=Code(s.status.error_code),
            error_message=s.status.error_message,
        )
        for s in response.model_version_status
    ]


def signatures_from_proto(signature_def_map: Any) -> dict[str, Signature]:
    """servingd's Signature values from a SignatureDefMap (what GetModelMetadata packs)."""
    return {
        key: Signature(
            method_name=sig.method_name,
            inputs={alias: _spec(info) for alias, info in sig.inputs.items()},
            outputs={alias: _spec(info) for alias, info in sig.outputs.items()},
        )
        for key, sig in signature_def_map.signature_def.items()
    }


def _spec(info: Any) -> TensorSpec:
    shape = info.tensor_shape
    dims = None if shape.unknown_rank else tuple(int(d.size) for d in shape.dim)
    return TensorSpec(name=info.name, dtype=numpy_dtype(info.dtype), shape=dims)


def model_server_config(config: ModelServerConfigLike) -> Any:
    """A ModelServerConfig from a message or its text format."""
    if isinstance(config, str):
        try:
            return text_format.Parse(config, model_server_config_pb2.ModelServerConfig())
        except text_format.ParseError as exc:
            raise InvalidArgument(
                f"Error parsing text-format tensorflow.serving.ModelServerConfig: {exc}"
            ) from exc
    return config


def check_inputs(inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {name: np.asarray(value) for name, value in inputs.items()}
