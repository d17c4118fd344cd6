"""PredictRequests for the models in models.py, for tests that need the same request twice."""

from __future__ import annotations

from typing import Any

from servingd.protos.tensorflow.core.framework import types_pb2
from servingd.protos.tensorflow_serving.apis import predict_pb2


def typed_tensor(values: list[Any], dtype: Any, shape: list[int]) -> Any:
    """A TensorProto with its values in the typed field of `dtype` (string, int64 or float)."""
    tensor = predict_pb2.PredictRequest().inputs["t"]
    tensor.dtype = dtype
    for size in shape:
        tensor.tensor_shape.dim.add().size = size
    if dtype == types_pb2.DT_STRING:
        tensor.string_val.extend(values)
    elif dtype == types_pb2.DT_INT64:
        tensor.int64_val.extend(values)
    else:
        tensor.float_val.extend(values)
    return tensor


def classify_and_regress_predict(signature_name: str, model_name: str = "cr") -> Any:
    """A Predict for models.classify_and_regress(): two rows, x = [1, 2.5] and [0.5, -0.5],
    k = 1 and 3, lang "en" and "de"."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs["x"].CopyFrom(typed_tensor([1.0, 2.5, 0.5, -0.5], types_pb2.DT_FLOAT, [2, 2]))
    request.inputs["k"].CopyFrom(typed_tensor([1, 3], types_pb2.DT_INT64, [2, 1]))
    request.inputs["lang"].CopyFrom(typed_tensor([b"en", b"de"], types_pb2.DT_STRING, [2]))
    return request
