"""Triton's model configuration extension: a served version's ModelConfig (model_config.proto),
built from what servingd knows: the serving_default signature, the model's version policy and
the batching parameters.

The batch dimension follows Triton's rule. With `--enable_batching`, a model whose every input
and output has a first dimension of any size (-1) is batched: `max_batch_size` is the batching
parameters' max_batch_size and `dims` leave that first dimension out (clients such as
perf_analyzer then prepend their batch size). Any other model answers max_batch_size 0 with
the full shapes, which clients send as given. -1 marks a dimension of any size; an input of
unknown rank has no `dims`, as its metadata has no shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from servingd.apis.predictor import ModelRef, Predictor
from servingd.apis.v2.datatypes import BYTES, datatype
from servingd.apis.v2.inference import PLATFORM
from servingd.batching import BatchingOptions
from servingd.config import version_policy
from servingd.protos.inference import model_config_pb2 as mc
from servingd.servables.onnx import Signature, TensorSpec
from servingd.server_core import ServerCore
from servingd.sources.version_policy import All, Latest

# Triton's backend name for ONNX models (its platform is inference.PLATFORM).
BACKEND = "onnxruntime"
_INT32_MAX = 2**31 - 1


def model_config(predictor: Predictor, ref: ModelRef, batching: BatchingOptions | None) -> Any:
    """The ModelConfig of the version `ref` names; errors as for ModelMetadata (NOT_FOUND)."""
    _version, signature = predictor.signature(ref)
    batch = max_batch_size(signature, batching)
    config = mc.ModelConfig(name=ref.name, platform=PLATFORM, backend=BACKEND, max_batch_size=batch)
    _fill_version_policy(config.version_policy, predictor.core, ref.name)
    for alias, spec in signature.inputs.items():
        config.input.add(name=alias, data_type=data_type(spec, alias), dims=_dims(spec, batch))
    for alias, spec in signature.outputs.items():
        config.output.add(name=alias, data_type=data_type(spec, alias), dims=_dims(spec, batch))
    if batch and batching is not None:
        config.dynamic_batching.max_queue_delay_microseconds = batching.batch_timeout_micros
    return config


def max_batch_size(signature: Signature, batching: BatchingOptions | None) -> int:
    """The batching max_batch_size when the batcher can batch this signature, else 0."""
    if batching is None or not signature.inputs:
        return 0
    tensors: Iterable[TensorSpec] = (*signature.inputs.values(), *signature.outputs.values())
    if not all(spec.shape and spec.shape[0] == -1 for spec in tensors):
        return 0
    return min(batching.max_batch_size, _INT32_MAX)


def data_type(spec: TensorSpec, alias: str) -> Any:
    """Triton's DataType enum value for a tensor (BYTES is Triton's TYPE_STRING)."""
    name = datatype(spec.dtype, alias)
    return mc.DataType.Value("TYPE_STRING" if name == BYTES else f"TYPE_{name}")


def _dims(spec: TensorSpec, max_batch: int) -> tuple[int, ...]:
    shape = spec.shape or ()
    return shape[1:] if max_batch else shape


def _fill_version_policy(policy: Any, core: ServerCore, name: str) -> None:
    models = [m for m in core.config.model_config_list.config if m.name == name]
    # A model no longer in the config (a repository unload) still serves until it unloads.
    served = version_policy(models[0]) if models else Latest()
    if isinstance(served, Latest):
        policy.latest.num_versions = served.num_versions
    elif isinstance(served, All):
        policy.all.SetInParent()
    else:
        policy.specific.versions.extend(served.versions)
