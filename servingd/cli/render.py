"""What the CLI prints: TF Serving's JSON shapes when piped, aligned tables on a terminal."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from google.protobuf import json_format

from servingd.apis.metadata import signature_def_map
from servingd.client import VersionStatus
from servingd.servables.onnx import Signature, TensorSpec
from servingd.tensor_codec import data_type, dtype_name


def dumps(document: Any, indent: str = "") -> str:
    """Indented JSON with tensors kept on one line each, as TF's REST API prints them."""
    inner = indent + "  "
    if isinstance(document, dict) and document:
        items = [f"{inner}{json.dumps(k)}: {dumps(v, inner)}" for k, v in document.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(document, list) and any(isinstance(v, dict) for v in document):
        items = [inner + dumps(v, inner) for v in document]
        return "[\n" + ",\n".join(items) + f"\n{indent}]"
    return json.dumps(document, ensure_ascii=False)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


# ----- status -------------------------------------------------------------------------------


def status_json(statuses: Sequence[VersionStatus]) -> Any:
    """TF's REST status document (GET /v1/models/<m>), int64 versions as strings."""
    return {
        "model_version_status": [
            {
                "version": str(s.version),
                "state": s.state,
                "status": {"error_code": s.error_code.name, "error_message": s.error_message},
            }
            for s in statuses
        ]
    }


def status_table(model: str, statuses: Sequence[VersionStatus]) -> str:
    rows = [
        (
            model,
            s.version,
            s.state,
            "" if not s.error_code else f"{s.error_code.name}: {s.error_message}",
        )
        for s in statuses
    ]
    return table(("MODEL", "VERSION", "STATE", "ERROR"), rows)


# ----- signatures ---------------------------------------------------------------------------


def signatures_json(signatures: Mapping[str, Signature]) -> Any:
    """The `signature_def` map as TF's REST metadata shows it (proto JSON)."""
    document = json_format.MessageToDict(
        signature_def_map(signatures), preserving_proto_field_name=True
    )
    return document.get("signature_def", {})


def signatures_table(signatures: Mapping[str, Signature]) -> str:
    """saved_model_cli's layout: one block per signature, one row per tensor."""
    blocks = []
    for key in sorted(signatures):
        signature = signatures[key]
        rows = [
            (direction, alias, _type(spec), _shape(spec), spec.name)
            for direction, tensors in (("input", signature.inputs), ("output", signature.outputs))
            for alias, spec in tensors.items()
        ]
        blocks.append(
            f"signature_def['{key}']  method: {signature.method_name}\n"
            + _indent(table(("", "ALIAS", "DTYPE", "SHAPE", "TENSOR"), rows))
        )
    return "\n\n".join(blocks)


def _type(spec: TensorSpec) -> str:
    return dtype_name(data_type(spec.dtype))


def _shape(spec: TensorSpec) -> str:
    return "unknown rank" if spec.shape is None else str(list(spec.shape))


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


# ----- tensors ------------------------------------------------------------------------------


def tensor_json(array: np.ndarray) -> Any:
    """Nested lists; float32 in its shortest form, strings as text or {"b64": ...}."""
    if array.dtype == np.float32:
        flat: list[Any] = [float(str(v)) for v in array.ravel()]
        return np.array(flat, dtype=object).reshape(array.shape).tolist() if array.ndim else flat[0]
    if array.dtype == np.dtype(object) or array.dtype.kind in ("S", "U"):
        flat = [_string_json(v) for v in array.ravel().tolist()]
        return np.array(flat, dtype=object).reshape(array.shape).tolist() if array.ndim else flat[0]
    return array.tolist()


def _string_json(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    return str(value)


def tensors_text(outputs: Mapping[str, np.ndarray]) -> str:
    blocks = []
    for alias in sorted(outputs):
        array = outputs[alias]
        kind = "string" if array.dtype == np.dtype(object) else array.dtype.name
        blocks.append(f"{alias}  {kind}  {list(array.shape)}\n{_indent(str(array))}")
    return "\n\n".join(blocks)
