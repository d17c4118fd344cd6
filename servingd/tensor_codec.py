"""TensorProto <-> numpy, for every dtype onnxruntime can take or give.

Decoding follows TensorFlow's Tensor::FromProto: `tensor_content` (raw little-endian,
row-major) when present, else the typed `*_val` field, where fewer values than the shape
needs are filled with the last value and none at all with the type's default. Three
deliberate differences, each only on requests TF would mangle or that servingd cannot run:
more values than the shape holds is INVALID_ARGUMENT (TF truncates); a fill that would
allocate more than `MAX_FILL_BYTES` from a claimed (not sent) shape is INVALID_ARGUMENT (TF
allocates it); DT_BFLOAT16 is UNIMPLEMENTED (onnxruntime's Python API has no numpy
bfloat16, so no model servingd loads can take or give one).

Encoding writes the typed fields (TF Serving's default) or `tensor_content`; strings always
travel in `string_val`, which every client decodes. Measured on 100k float32 (upb protobuf):
reading `float_val` through upb's `__array__` (`np.asarray`) takes 35 us, `np.fromiter`
4.6 ms, `np.array(list(...))` 7 ms; writing one packed field built with numpy and merged into
the message takes 0.1 ms, `extend(tolist())` 8 ms. Varint fields (int_val, int64_val, ...)
are written with `extend(tolist())`: vectorised varint layout in numpy was no faster.
No Python loop touches tensor elements except for strings.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from servingd.core.status import InvalidArgument, Unimplemented
from servingd.protos.tensorflow.core.framework import tensor_pb2, types_pb2

TensorProto = tensor_pb2.TensorProto

MAX_FILL_BYTES = 64 << 20

_STRING = np.dtype(object)

# DataType -> (numpy dtype, name of the typed field that carries it, numpy dtype of that field).
_DECODE: dict[int, tuple[np.dtype[Any], str, np.dtype[Any]]] = {
    types_pb2.DT_FLOAT: (np.dtype(np.float32), "float_val", np.dtype(np.float32)),
    types_pb2.DT_DOUBLE: (np.dtype(np.float64), "double_val", np.dtype(np.float64)),
    types_pb2.DT_INT32: (np.dtype(np.int32), "int_val", np.dtype(np.int32)),
    types_pb2.DT_INT16: (np.dtype(np.int16), "int_val", np.dtype(np.int32)),
    types_pb2.DT_INT8: (np.dtype(np.int8), "int_val", np.dtype(np.int32)),
    types_pb2.DT_UINT8: (np.dtype(np.uint8), "int_val", np.dtype(np.int32)),
    types_pb2.DT_UINT16: (np.dtype(np.uint16), "int_val", np.dtype(np.int32)),
    types_pb2.DT_INT64: (np.dtype(np.int64), "int64_val", np.dtype(np.int64)),
    types_pb2.DT_UINT32: (np.dtype(np.uint32), "uint32_val", np.dtype(np.uint32)),
    types_pb2.DT_UINT64: (np.dtype(np.uint64), "uint64_val", np.dtype(np.uint64)),
    types_pb2.DT_BOOL: (np.dtype(np.bool_), "bool_val", np.dtype(np.bool_)),
    # half_val carries float16 bit patterns widened to int32.
    types_pb2.DT_HALF: (np.dtype(np.float16), "half_val", np.dtype(np.int32)),
    # complex values travel as (real, imaginary) pairs of the component type.
    types_pb2.DT_COMPLEX64: (np.dtype(np.complex64), "scomplex_val", np.dtype(np.float32)),
    types_pb2.DT_COMPLEX128: (np.dtype(np.complex128), "dcomplex_val", np.dtype(np.float64)),
    types_pb2.DT_STRING: (_STRING, "string_val", _STRING),
}

_LITTLE_ENDIAN = {np_dtype: np_dtype.newbyteorder("<") for np_dtype, _f, _w in _DECODE.values()}

_ENCODE: dict[np.dtype[Any], int] = {
    np_dtype: dt for dt, (np_dtype, _field, _wire) in _DECODE.items() if np_dtype is not _STRING
}

_LENGTH_DELIMITED = 2


def dtype_name(dtype: int) -> str:
    """'DT_FLOAT' for 1: the names TF uses in messages and in JSON."""
    try:
        return str(types_pb2.DataType.Name(dtype))
    except ValueError:
        return f"DataType({dtype})"


def numpy_dtype(dtype: int) -> np.dtype[Any]:
    entry = _DECODE.get(dtype)
    if entry is None:
        raise Unimplemented(f"Tensors of type {dtype_name(dtype)} are not supported")
    return entry[0]


def data_type(dtype: np.dtype[Any]) -> int:
    """The DataType for a numpy dtype; object arrays are strings."""
    if dtype == _STRING or dtype.kind in ("U", "S"):
        return int(types_pb2.DT_STRING)
    found = _ENCODE.get(np.dtype(dtype))
    if found is None:
        raise Unimplemented(f"numpy dtype {dtype} has no TensorFlow DataType")
    return found


def to_ndarray(proto: Any, name: str = "") -> np.ndarray:
    """Decodes a TensorProto. `name` is only used in error messages."""
    label = f"'{name}' " if name else ""
    if proto.dtype == types_pb2.DT_INVALID:
        raise InvalidArgument(f"tensor {label}has no dtype (DT_INVALID)")
    entry = _DECODE.get(proto.dtype)
    if entry is None:
        raise Unimplemented(f"tensor {label}has unsupported dtype {dtype_name(proto.dtype)}")
    np_dtype, field, wire_dtype = entry
    if proto.tensor_shape.unknown_rank:
        raise InvalidArgument(f"tensor {label}has unknown rank; a request tensor needs a shape")
    shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"tensor {label}has a negative dimension in shape {list(shape)}")
    count = 1
    for d in shape:
        count *= d  # Python ints: a hostile shape cannot overflow into a small number

    content = proto.tensor_content  # each read copies the bytes out of the message: read once
    if content:
        if np_dtype is _STRING:
            raise InvalidArgument(
                f"string tensor {label}must use string_val; tensor_content is not supported"
            )
        needed = count * np_dtype.itemsize
        if len(content) != needed:
            raise InvalidArgument(
                f"tensor {label}has {len(content)} bytes of tensor_content but "
                f"shape {list(shape)} of {dtype_name(proto.dtype)} needs {needed}"
            )
        flat = np.frombuffer(content, dtype=_LITTLE_ENDIAN[np_dtype])
        if np_dtype == np.bool_:
            flat = flat.view(np.uint8) != 0  # any non-zero byte is true, as in C++
        return _reshape(flat.astype(np_dtype, copy=False), shape, label)

    values = getattr(proto, field)
    per_element = 2 if np_dtype.kind == "c" else 1
    sent = len(values)
    if sent % per_element:
        raise InvalidArgument(
            f"tensor {label}has an odd number of values in {field}; complex values travel as "
            "(real, imaginary) pairs"
        )
    sent //= per_element
    if sent > count:
        raise InvalidArgument(
            f"tensor {label}has {sent} values in {field} but shape {list(shape)} holds {count}"
        )
    if sent < count and count * max(np_dtype.itemsize, 8) > MAX_FILL_BYTES:
        raise InvalidArgument(
            f"tensor {label}declares shape {list(shape)} ({count} elements) but sends "
            f"{sent}; refusing to fill a tensor that large"
        )
    return _reshape(_from_values(values, sent, count, np_dtype, wire_dtype), shape, label)


def _reshape(flat: np.ndarray, shape: tuple[int, ...], label: str) -> np.ndarray:
    try:
        return flat.reshape(shape)
    except ValueError as exc:  # more dims than numpy allows, or an absurd empty shape
        raise InvalidArgument(f"tensor {label}has an unusable shape {list(shape)}: {exc}") from exc


def _from_values(
    values: Any, sent: int, count: int, np_dtype: np.dtype[Any], wire_dtype: np.dtype[Any]
) -> np.ndarray:
    if np_dtype is _STRING:
        flat = np.empty(count, dtype=object)
        if sent:
            flat[:sent] = list(values)
            flat[sent:] = values[sent - 1]
        else:
            flat[:] = b""
        return flat
    if sent == 0:
        return np.zeros(count, dtype=np_dtype)
    wire = np.asarray(values, dtype=wire_dtype)
    if np_dtype.kind == "c":
        wire = wire.view(np_dtype)
    elif np_dtype == np.float16:
        wire = wire.astype(np.uint16).view(np.float16)
    elif wire_dtype != np_dtype:
        wire = wire.astype(np_dtype)  # int_val narrows as TF's static_cast does
    if sent == count:
        return wire
    filled = np.empty(count, dtype=np_dtype)
    filled[:sent] = wire
    filled[sent:] = wire[sent - 1]
    return filled


def to_tensor_proto(array: np.ndarray, as_tensor_content: bool = False) -> Any:
    """Encodes an ndarray: typed `*_val` fields (TF Serving's default), or `tensor_content`."""
    proto = TensorProto()
    fill_tensor_proto(proto, array, as_tensor_content)
    return proto


def fill_tensor_proto(proto: Any, array: np.ndarray, as_tensor_content: bool = False) -> None:
    """Encodes into an existing (e.g. map-entry) TensorProto, avoiding a copy of the message."""
    direct = _direct_bytes(array, as_tensor_content)
    if direct is not None:
        # The common answers in one merge. Field by field costs ~4x as much for small
        # tensors (bench/README.md, "encode").
        proto.MergeFromString(direct)
        return
    dtype = data_type(array.dtype)
    proto.dtype = dtype
    dims = proto.tensor_shape.dim
    for size in array.shape:
        dims.add().size = size
    if dtype == types_pb2.DT_STRING:
        proto.string_val.extend(
            v if isinstance(v, bytes) else str(v).encode("utf-8") for v in array.ravel()
        )
        return
    if as_tensor_content:
        proto.tensor_content = np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()
        return
    if array.size == 0:
        return
    _np_dtype, field, wire_dtype = _DECODE[dtype]
    flat = array.ravel()
    if array.dtype.kind == "c":
        flat = flat.view(wire_dtype)
    elif array.dtype == np.float16:
        flat = flat.view(np.uint16)  # half_val holds the bit patterns
    if flat.dtype.kind != "f":
        # Varint fields: numpy cannot lay varints out faster than upb's extend (measured).
        getattr(proto, field).extend(flat.astype(wire_dtype, copy=False).tolist())
        return
    payload = flat.astype(wire_dtype.newbyteorder("<"), copy=False).tobytes()
    proto.MergeFromString(_PACKED_KEY[field] + varint(len(payload)) + payload)


def tensor_proto_bytes(array: np.ndarray, as_tensor_content: bool = False) -> bytes:
    """`to_tensor_proto(array, as_tensor_content).SerializeToString()`, without building the
    message for the common answers."""
    direct = _direct_bytes(array, as_tensor_content)
    if direct is not None:
        return direct
    return bytes(to_tensor_proto(array, as_tensor_content).SerializeToString())


def _direct_bytes(array: np.ndarray, as_tensor_content: bool) -> bytes | None:
    """The serialized TensorProto of the common answers (float types in their typed field,
    any numeric type as tensor_content): dtype and shape from the header cache, then the
    values as one length-delimited field. None for the rest (strings, varint fields,
    big-endian tensor_content), which are written field by field."""
    dtype = _ENCODE.get(array.dtype)
    if dtype is None:
        return None
    if as_tensor_content:
        if array.dtype.byteorder == ">":
            return None
        key, payload = _TENSOR_CONTENT_KEY, np.ascontiguousarray(array).tobytes()
    else:
        packed = _PACKED_FLOATS.get(dtype)
        if packed is None:
            return None
        key, wire_dtype = packed
        flat = np.ascontiguousarray(array).ravel()
        if flat.dtype.kind == "c":  # (real, imaginary) pairs of the component type
            flat = flat.astype(flat.dtype.newbyteorder("<"), copy=False).view(wire_dtype)
        payload = flat.astype(wire_dtype, copy=False).tobytes()
    header = _tensor_header(dtype, array.shape)
    return header + key + varint(len(payload)) + payload if payload else header


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# The wire key of each typed field written as one packed (length-delimited) field.
_PACKED_KEY = {
    field.name: varint((field.number << 3) | _LENGTH_DELIMITED)
    for field in TensorProto.DESCRIPTOR.fields
    if field.name.endswith("_val")
}

# DataTypes whose typed field holds little-endian floats: (its packed key, the wire dtype).
# Complex arrays are their (real, imaginary) float pairs.
_PACKED_FLOATS = {
    dt: (_PACKED_KEY[field], wire_dtype.newbyteorder("<"))
    for dt, (_np_dtype, field, wire_dtype) in _DECODE.items()
    if wire_dtype.kind == "f"
}
_TENSOR_CONTENT_KEY = varint(
    (TensorProto.DESCRIPTOR.fields_by_name["tensor_content"].number << 3) | _LENGTH_DELIMITED
)
_HEADERS: dict[tuple[int, tuple[int, ...]], bytes] = {}
_MAX_HEADERS = 4096  # distinct (dtype, shape) pairs remembered; others are serialized each time


def _tensor_header(dtype: int, shape: tuple[int, ...]) -> bytes:
    """A TensorProto's `dtype` and `tensor_shape`, serialized (answers repeat their shapes)."""
    key = (dtype, shape)
    header = _HEADERS.get(key)
    if header is None:
        proto: Any = TensorProto()
        proto.dtype = dtype
        for size in shape:
            proto.tensor_shape.dim.add().size = size
        header = bytes(proto.SerializeToString())
        if len(_HEADERS) < _MAX_HEADERS:
            _HEADERS[key] = header
    return header
