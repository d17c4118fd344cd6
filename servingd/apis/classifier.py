"""ClassificationResult from a classify signature's outputs (TF's classifier.cc rules).

Shared by gRPC Classify, REST :classify and MultiInference. The checks and their texts are
TF's; one deliberate leniency: integer `classes` (common in ONNX classifiers) become their
decimal text, where TF requires DT_STRING.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from servingd.core.status import FailedPrecondition, InvalidArgument
from servingd.protos.tensorflow_serving.apis import classification_pb2
from servingd.tensor_codec import data_type, dtype_name


def shape_text(array: np.ndarray) -> str:
    """TensorShape::DebugString: [2,3]."""
    return "[" + ",".join(str(d) for d in array.shape) + "]"


def classification_result(outputs: Mapping[str, np.ndarray], num_examples: int) -> Any:
    """`outputs` holds `classes` and/or `scores` for `num_examples` examples."""
    classes = outputs.get("classes")
    scores = outputs.get("scores")
    if classes is None and scores is None:
        raise FailedPrecondition(
            'Expected classification signature outputs to contain at least one of "classes" '
            'or "scores".'
        )
    if classes is not None:
        _check("classes", classes, "OSUiu", "DT_STRING", num_examples)
    if scores is not None:
        _check("scores", scores, "f", "DT_FLOAT", num_examples)
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise InvalidArgument(
            "Tensors class and score should match in dim_size(1). Got "
            f"{classes.shape[1]} vs. {scores.shape[1]}"
        )
    Class = classification_pb2.Class
    rows: list[list[Any]]
    if classes is not None and scores is not None:
        rows = [
            [Class(label=label, score=score) for label, score in zip(labels, values, strict=True)]
            for labels, values in zip(_labels(classes), scores.tolist(), strict=True)
        ]
    elif classes is not None:
        rows = [[Class(label=label) for label in labels] for labels in _labels(classes)]
    else:
        assert scores is not None
        rows = [[Class(score=score) for score in values] for values in scores.tolist()]
    result = classification_pb2.ClassificationResult()
    for row in rows:
        result.classifications.add().classes.extend(row)
    return result


def _check(name: str, array: np.ndarray, kinds: str, tf_type: str, num_examples: int) -> None:
    if array.ndim != 2:
        raise InvalidArgument(
            f"Expected Tensor shape: [batch_size num_classes] but got {shape_text(array)}"
        )
    if array.dtype.kind not in kinds:
        raise InvalidArgument(
            f"Expected {name} Tensor of {tf_type}. Got: {dtype_name(data_type(array.dtype))}"
        )
    if array.shape[0] != num_examples:
        raise InvalidArgument(
            f"Expected {name} output batch size of {num_examples}. Got: {array.shape[0]}"
        )


def _labels(classes: np.ndarray) -> list[list[str]]:
    if classes.dtype.kind in "iu":
        return [[str(v) for v in row] for row in classes.tolist()]
    return [
        [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in row]
        for row in classes.tolist()
    ]
