"""Signatures as TF's SignatureDefMap (GetModelMetadata), shared by gRPC and REST."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from servingd.core.status import InvalidArgument
from servingd.protos.tensorflow.core.protobuf import meta_graph_pb2
from servingd.protos.tensorflow_serving.apis import get_model_metadata_pb2
from servingd.servables.onnx import Signature, TensorSpec
from servingd.tensor_codec import data_type

SIGNATURE_DEF_FIELD = "signature_def"


def check_metadata_fields(fields: list[str]) -> None:
    if not fields:
        raise InvalidArgument("GetModelMetadataRequest must specify at least one metadata_field")
    for field in fields:
        if field != SIGNATURE_DEF_FIELD:
            raise InvalidArgument(f"Metadata field {field} is not supported")


def signature_def_map(signatures: Mapping[str, Signature]) -> Any:
    result = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in signatures.items():
        sig_def = result.signature_def[key]
        sig_def.method_name = signature.method_name
        for alias, spec in signature.inputs.items():
            _fill_tensor_info(sig_def.inputs[alias], spec)
        for alias, spec in signature.outputs.items():
            _fill_tensor_info(sig_def.outputs[alias], spec)
    return result


def _fill_tensor_info(info: meta_graph_pb2.TensorInfo, spec: TensorSpec) -> None:
    info.name = spec.name
    info.dtype = data_type(spec.dtype)  # type: ignore[assignment]
    if spec.shape is None:
        info.tensor_shape.unknown_rank = True
        return
    # unknown_rank must be present even when false: perf_analyzer reads it. Proto3 drops a
    # false bool on the wire, which its parser treats as false, so setting it is enough.
    info.tensor_shape.unknown_rank = False
    for size in spec.shape:
        info.tensor_shape.dim.add().size = size
