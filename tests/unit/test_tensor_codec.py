"""TensorProto <-> ndarray for every dtype, both encodings, TF's fill rule and hostile input."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest

from servingd.core.status import Code, ServingError
from servingd.protos.tensorflow.core.framework import tensor_pb2, types_pb2
from servingd.tensor_codec import (
    MAX_FILL_BYTES,
    data_type,
    dtype_name,
    fill_tensor_proto,
    to_ndarray,
    to_tensor_proto,
)

TensorProto = tensor_pb2.TensorProto

# numpy dtype -> (DataType, typed field that carries it)
DTYPES: dict[str, tuple[int, str]] = {
    "float16": (types_pb2.DT_HALF, "half_val"),
    "float32": (types_pb2.DT_FLOAT, "float_val"),
    "float64": (types_pb2.DT_DOUBLE, "double_val"),
    "int8": (types_pb2.DT_INT8, "int_val"),
    "int16": (types_pb2.DT_INT16, "int_val"),
    "int32": (types_pb2.DT_INT32, "int_val"),
    "int64": (types_pb2.DT_INT64, "int64_val"),
    "uint8": (types_pb2.DT_UINT8, "int_val"),
    "uint16": (types_pb2.DT_UINT16, "int_val"),
    "uint32": (types_pb2.DT_UINT32, "uint32_val"),
    "uint64": (types_pb2.DT_UINT64, "uint64_val"),
    "bool": (types_pb2.DT_BOOL, "bool_val"),
    "complex64": (types_pb2.DT_COMPLEX64, "scomplex_val"),
    "complex128": (types_pb2.DT_COMPLEX128, "dcomplex_val"),
}


def sample(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Values that exercise each type's range: extremes, negatives, fractions."""
    count = int(np.prod(shape))
    np_dtype = np.dtype(dtype)
    if np_dtype == np.bool_:
        flat = np.arange(count) % 3 == 0
    elif np_dtype.kind in "iu":
        info = np.iinfo(np_dtype)
        pattern = [info.min, info.max, 0, 1, info.max // 3, info.min // 7]
        flat = np.array([pattern[i % len(pattern)] for i in range(count)], dtype=np_dtype)
    elif np_dtype.kind == "f":
        finfo = np.finfo(np_dtype)
        pattern = [0.0, -1.5, float(finfo.max), float(finfo.tiny), 3.25, float("inf")]
        flat = np.array([pattern[i % len(pattern)] for i in range(count)], dtype=np_dtype)
    else:
        flat = (np.arange(count) * 1.5 - 2.0 + 1j * np.arange(count)[::-1]).astype(np_dtype)
    return flat.reshape(shape)


def wire(proto: Any) -> Any:
    """The message as the server receives it: serialised and parsed again."""
    return TensorProto.FromString(proto.SerializeToString())


def code_of(exc: pytest.ExceptionInfo[ServingError]) -> Code:
    return exc.value.code


SHAPES = [(), (0,), (3,), (2, 3), (0, 4), (2, 1, 3)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("as_tensor_content", [False, True], ids=["typed", "tensor_content"])
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_every_dtype_round_trips(
    dtype: str, as_tensor_content: bool, shape: tuple[int, ...]
) -> None:
    array = sample(dtype, shape)
    proto = wire(to_tensor_proto(array, as_tensor_content))
    tf_dtype, field = DTYPES[dtype]
    assert proto.dtype == tf_dtype
    assert [d.size for d in proto.tensor_shape.dim] == list(shape)
    if as_tensor_content:
        assert len(proto.tensor_content) == array.nbytes
        assert len(getattr(proto, field)) == 0
    else:
        assert not proto.tensor_content
        per_element = 2 if array.dtype.kind == "c" else 1
        assert len(getattr(proto, field)) == array.size * per_element
    decoded = to_ndarray(proto)
    assert decoded.dtype == array.dtype
    assert decoded.shape == shape
    np.testing.assert_array_equal(decoded, array)


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_typed_field_encoding_equals_extend(dtype: str) -> None:
    """The packed-field fast path writes exactly what protobuf's own extend would."""
    array = sample(dtype, (7,))
    tf_dtype, field = DTYPES[dtype]
    expected = TensorProto(dtype=tf_dtype)
    expected.tensor_shape.dim.add().size = 7
    flat = array
    if array.dtype.kind == "c":
        flat = array.view(np.float32 if array.dtype == np.complex64 else np.float64)
    elif array.dtype == np.float16:
        flat = array.view(np.uint16).astype(np.int32)
    getattr(expected, field).extend(flat.tolist())
    assert to_tensor_proto(array) == expected


def test_strings_round_trip_in_string_val_for_both_encodings() -> None:
    array = np.array([[b"a", b""], ["ünï", b"\xff\x00binary"]], dtype=object)
    for as_tensor_content in (False, True):
        proto = wire(to_tensor_proto(array, as_tensor_content))
        assert proto.dtype == types_pb2.DT_STRING
        assert not proto.tensor_content
        assert list(proto.string_val) == [b"a", b"", "ünï".encode(), b"\xff\x00binary"]
        decoded = to_ndarray(proto)
        assert decoded.dtype == np.dtype(object)
        assert decoded.tolist() == [[b"a", b""], ["ünï".encode(), b"\xff\x00binary"]]


def test_numpy_text_arrays_are_strings() -> None:
    assert data_type(np.array(["x"]).dtype) == types_pb2.DT_STRING
    assert data_type(np.array([b"x"]).dtype) == types_pb2.DT_STRING
    assert list(to_tensor_proto(np.array(["ab", "c"])).string_val) == [b"ab", b"c"]


def test_string_scalar_and_zero_size() -> None:
    scalar = to_ndarray(wire(to_tensor_proto(np.array(b"hi", dtype=object))))
    assert scalar.shape == () and scalar.item() == b"hi"
    empty = to_ndarray(wire(to_tensor_proto(np.empty((0, 2), dtype=object))))
    assert empty.shape == (0, 2) and empty.dtype == np.dtype(object)


def _typed(dtype: int, shape: list[int], field: str, values: list[Any]) -> Any:
    proto = TensorProto(dtype=dtype)
    for size in shape:
        proto.tensor_shape.dim.add().size = size
    getattr(proto, field).extend(values)
    return wire(proto)


def test_fill_rule_repeats_the_last_value() -> None:
    decoded = to_ndarray(_typed(types_pb2.DT_FLOAT, [2, 3], "float_val", [1.0, 2.0]))
    np.testing.assert_array_equal(decoded, [[1.0, 2.0, 2.0], [2.0, 2.0, 2.0]])
    ints = to_ndarray(_typed(types_pb2.DT_INT8, [4], "int_val", [-3]))
    np.testing.assert_array_equal(ints, np.array([-3, -3, -3, -3], dtype=np.int8))
    strings = to_ndarray(_typed(types_pb2.DT_STRING, [3], "string_val", [b"a", b"b"]))
    assert strings.tolist() == [b"a", b"b", b"b"]
    complexes = to_ndarray(_typed(types_pb2.DT_COMPLEX64, [3], "scomplex_val", [1.0, 2.0]))
    np.testing.assert_array_equal(complexes, np.array([1 + 2j] * 3, dtype=np.complex64))


@pytest.mark.parametrize(
    ("dtype", "field", "default"),
    [
        (types_pb2.DT_FLOAT, "float_val", 0.0),
        (types_pb2.DT_INT64, "int64_val", 0),
        (types_pb2.DT_BOOL, "bool_val", False),
        (types_pb2.DT_HALF, "half_val", 0.0),
        (types_pb2.DT_STRING, "string_val", b""),
    ],
)
def test_no_values_fill_with_the_type_default(dtype: int, field: str, default: Any) -> None:
    decoded = to_ndarray(_typed(dtype, [2, 2], field, []))
    assert decoded.shape == (2, 2)
    assert decoded.tolist() == [[default, default], [default, default]]


def test_scalar_from_typed_field() -> None:
    decoded = to_ndarray(_typed(types_pb2.DT_DOUBLE, [], "double_val", [2.5]))
    assert decoded.shape == () and decoded.dtype == np.float64 and decoded.item() == 2.5


def test_int_val_narrows_like_a_static_cast() -> None:
    decoded = to_ndarray(_typed(types_pb2.DT_UINT8, [3], "int_val", [300, -1, 7]))
    np.testing.assert_array_equal(decoded, np.array([44, 255, 7], dtype=np.uint8))


def test_half_val_carries_bit_patterns() -> None:
    decoded = to_ndarray(_typed(types_pb2.DT_HALF, [3], "half_val", [0x3C00, 0xC000, 0x7C00]))
    np.testing.assert_array_equal(decoded, np.array([1.0, -2.0, np.inf], dtype=np.float16))


def test_bool_tensor_content_treats_any_non_zero_byte_as_true() -> None:
    proto = TensorProto(dtype=types_pb2.DT_BOOL, tensor_content=b"\x00\x01\x02\xff")
    proto.tensor_shape.dim.add().size = 4
    assert to_ndarray(proto).tolist() == [False, True, True, True]


def test_tensor_content_is_little_endian() -> None:
    proto = TensorProto(
        dtype=types_pb2.DT_INT32, tensor_content=b"\x01\x00\x00\x00\x00\x01\x00\x00"
    )
    proto.tensor_shape.dim.add().size = 2
    assert to_ndarray(proto).tolist() == [1, 256]


def test_too_many_values_is_invalid_argument() -> None:
    with pytest.raises(ServingError) as info:
        to_ndarray(_typed(types_pb2.DT_FLOAT, [2], "float_val", [1.0, 2.0, 3.0]), "x")
    assert code_of(info) == Code.INVALID_ARGUMENT
    assert info.value.message == "tensor 'x' has 3 values in float_val but shape [2] holds 2"


def test_odd_number_of_complex_components_is_invalid_argument() -> None:
    with pytest.raises(ServingError) as info:
        to_ndarray(_typed(types_pb2.DT_COMPLEX128, [2], "dcomplex_val", [1.0, 2.0, 3.0]), "c")
    assert code_of(info) == Code.INVALID_ARGUMENT
    assert "tensor 'c' has an odd number of values in dcomplex_val" in info.value.message


def test_tensor_content_byte_count_mismatch_is_invalid_argument() -> None:
    proto = TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=b"\x00" * 10)
    proto.tensor_shape.dim.add().size = 3
    with pytest.raises(ServingError) as info:
        to_ndarray(proto, "x")
    assert code_of(info) == Code.INVALID_ARGUMENT
    assert info.value.message == (
        "tensor 'x' has 10 bytes of tensor_content but shape [3] of DT_FLOAT needs 12"
    )


def test_hostile_shape_is_rejected_without_allocating() -> None:
    """A claimed 1e12 elements with one value sent: refused before anything is allocated."""
    typed = _typed(types_pb2.DT_FLOAT, [10**6, 10**6], "float_val", [1.0])
    content = TensorProto(dtype=types_pb2.DT_DOUBLE, tensor_content=b"\x00" * 8)
    for size in (10**6, 10**6):
        content.tensor_shape.dim.add().size = size
    tracemalloc.start()
    try:
        for proto in (typed, content):
            with pytest.raises(ServingError) as info:
                to_ndarray(proto, "x")
            assert code_of(info) == Code.INVALID_ARGUMENT
            assert "'x'" in info.value.message
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    with pytest.raises(ServingError, match="refusing to fill"):
        to_ndarray(typed, "x")


def test_fill_up_to_the_bound_is_allowed() -> None:
    count = MAX_FILL_BYTES // 8
    decoded = to_ndarray(_typed(types_pb2.DT_FLOAT, [count], "float_val", [4.0]))
    assert decoded.shape == (count,) and decoded[-1] == 4.0


@pytest.mark.parametrize(
    ("mutate", "code", "message"),
    [
        (
            lambda p: setattr(p, "dtype", types_pb2.DT_INVALID),
            Code.INVALID_ARGUMENT,
            "tensor 'x' has no dtype (DT_INVALID)",
        ),
        (
            lambda p: setattr(p, "dtype", types_pb2.DT_BFLOAT16),
            Code.UNIMPLEMENTED,
            "tensor 'x' has unsupported dtype DT_BFLOAT16",
        ),
        (
            lambda p: setattr(p, "dtype", types_pb2.DT_RESOURCE),
            Code.UNIMPLEMENTED,
            "tensor 'x' has unsupported dtype DT_RESOURCE",
        ),
        (
            lambda p: setattr(p, "dtype", 999),
            Code.UNIMPLEMENTED,
            "tensor 'x' has unsupported dtype DataType(999)",
        ),
        (
            lambda p: p.tensor_shape.dim.add().__setattr__("size", -1),
            Code.INVALID_ARGUMENT,
            "tensor 'x' has a negative dimension in shape [1, -1]",
        ),
        (
            lambda p: setattr(p.tensor_shape, "unknown_rank", True),
            Code.INVALID_ARGUMENT,
            "tensor 'x' has unknown rank; a request tensor needs a shape",
        ),
    ],
)
def test_malformed_tensors(mutate: Any, code: Code, message: str) -> None:
    proto = _typed(types_pb2.DT_FLOAT, [1], "float_val", [1.0])
    mutate(proto)
    with pytest.raises(ServingError) as info:
        to_ndarray(proto, "x")
    assert (code_of(info), info.value.message) == (code, message)


def test_string_tensor_content_is_invalid_argument() -> None:
    proto = TensorProto(dtype=types_pb2.DT_STRING, tensor_content=b"\x01a")
    proto.tensor_shape.dim.add().size = 1
    with pytest.raises(ServingError) as info:
        to_ndarray(proto, "s")
    assert code_of(info) == Code.INVALID_ARGUMENT
    assert "'s'" in info.value.message and "string_val" in info.value.message


def test_more_dimensions_than_numpy_allows_is_invalid_argument() -> None:
    proto = _typed(types_pb2.DT_FLOAT, [1] * 80, "float_val", [1.0])
    with pytest.raises(ServingError) as info:
        to_ndarray(proto, "x")
    assert code_of(info) == Code.INVALID_ARGUMENT
    assert info.value.message.startswith("tensor 'x' has an unusable shape")


def test_unnamed_tensor_messages_read_naturally() -> None:
    with pytest.raises(ServingError) as info:
        to_ndarray(TensorProto())
    assert info.value.message == "tensor has no dtype (DT_INVALID)"


def test_encoding_unsupported_numpy_dtype_is_unimplemented() -> None:
    with pytest.raises(ServingError) as info:
        to_tensor_proto(np.array(["2020-01-01"], dtype="datetime64[D]"))
    assert code_of(info) == Code.UNIMPLEMENTED


def test_fill_into_a_map_entry() -> None:
    from servingd.protos.tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse()
    fill_tensor_proto(response.outputs["y"], np.array([[1.5, 2.5]], dtype=np.float32))
    parsed = predict_pb2.PredictResponse.FromString(response.SerializeToString())
    assert list(parsed.outputs["y"].float_val) == [1.5, 2.5]
    assert [d.size for d in parsed.outputs["y"].tensor_shape.dim] == [1, 2]


def test_dtype_names() -> None:
    assert dtype_name(types_pb2.DT_FLOAT) == "DT_FLOAT"
    assert dtype_name(12345) == "DataType(12345)"


def test_decoded_typed_values_do_not_alias_the_message() -> None:
    proto = _typed(types_pb2.DT_FLOAT, [2], "float_val", [1.0, 2.0])
    decoded = to_ndarray(proto)
    proto.float_val[0] = 9.0
    del proto
    assert decoded.tolist() == [1.0, 2.0]
