"""RegressionResult from a regress signature's output (TF's regressor.cc rules).

Shared by gRPC Regress, REST :regress and MultiInference. One leniency: any float output
(float16/64 too) is accepted and sent as the proto's float, where TF requires DT_FLOAT.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from servingd.apis.classifier import shape_text
from servingd.core.status import InvalidArgument
from servingd.protos.tensorflow_serving.apis import regression_pb2
from servingd.tensor_codec import data_type, dtype_name


def regression_result(output: np.ndarray, num_examples: int) -> Any:
    """One Regression per example from an output of shape [batch] or [batch, 1]."""
    if not (output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1)):
        raise InvalidArgument(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but "
            f"got {shape_text(output)}"
        )
    if output.shape[0] != num_examples:
        raise InvalidArgument(
            "Input batch size did not match output batch size: "
            f"{num_examples} vs. {output.shape[0]}"
        )
    if output.dtype.kind != "f":
        raise InvalidArgument(
            f"Expected output Tensor of DT_FLOAT.  Got: {dtype_name(data_type(output.dtype))}"
        )
    result = regression_pb2.RegressionResult()
    Regression = regression_pb2.Regression
    result.regressions.extend(
        Regression(value=v) for v in output.astype(np.float32).ravel().tolist()
    )
    return result
