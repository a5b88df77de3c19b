"""Open Inference Protocol (KServe V2) tensors: the transport-neutral form both fronts (REST, gRPC) parse into and
serialize from, and the two encodings of the REST front: JSON ``data`` arrays and the binary tensor data extension.

A BYTES tensor is a flat list of ``bytes`` elements (the raw files); a numeric tensor is a numpy array of its
shape. In binary form a BYTES element is a 4-byte little-endian length followed by its bytes, numeric data is the
row-major little-endian array: both as Triton writes and reads them.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unirep_errors import InputError

DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
HEADER_LENGTH = "Inference-Header-Content-Length"
MAX_ELEMENTS = 1 << 28
MAX_DIMS = 32
VALUES_CHUNK = 1 << 16


@dataclass
class Tensor:
    """One named tensor. ``data`` is ``list[bytes]`` for BYTES, else an ndarray of ``shape``."""

    name: str
    datatype: str
    shape: list[int]
    data: Any
    parameters: dict[str, Any] = field(default_factory=dict)

    def count(self) -> int:
        return int(math.prod(self.shape))


def element_count(shape: Any, name: str) -> int:
    """The element count of a client's shape, refused (400) before anything is sized by it: every dimension and
    the product are bounded, so no later reshape or allocation can overflow."""
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InputError(f"input {name!r}: shape must be a list of integers, got {_short(shape)}")
    if len(shape) > MAX_DIMS:
        raise InputError(f"input {name!r}: shape has {len(shape)} dimensions; at most {MAX_DIMS}")
    if any(d < 0 for d in shape):
        raise InputError(f"input {name!r}: shape {_short(shape)} has a negative dimension")
    if any(d > MAX_ELEMENTS for d in shape):
        raise InputError(f"input {name!r}: shape {_short(shape)} has a dimension over {MAX_ELEMENTS}")
    count = int(math.prod(shape))
    if count > MAX_ELEMENTS:
        raise InputError(f"input {name!r}: shape {_short(shape)} has too many elements")
    return count


def _short(value: Any, limit: int = 80) -> str:
    """A client value in a one-line error message: repr (which escapes control characters), cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def split_bytes_elements(raw: bytes, count: int, name: str) -> list[bytes]:
    """BYTES in binary form: ``count`` length-prefixed elements, nothing left over."""
    out: list[bytes] = []
    pos = 0
    for _ in range(count):
        if pos + 4 > len(raw):
            raise InputError(f"input {name!r}: binary BYTES data ends inside an element's length prefix")
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + size > len(raw):
            raise InputError(f"input {name!r}: a BYTES element claims {size} bytes past the end of the data")
        out.append(raw[pos : pos + size])
        pos += size
    if pos != len(raw):
        raise InputError(f"input {name!r}: {len(raw) - pos} bytes are left after {count} BYTES elements")
    return out


def join_bytes_elements(elements: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def tensor_from_raw(name: str, datatype: str, shape: list[int], raw: bytes, params: dict[str, Any]) -> Tensor:
    """A tensor whose data came as bytes (the binary extension's region, or gRPC's ``raw_input_contents``)."""
    count = element_count(shape, name)
    if datatype == "BYTES":
        return Tensor(name, datatype, shape, split_bytes_elements(raw, count, name), params)
    dtype = _dtype(datatype, name)
    if len(raw) != count * dtype.itemsize:
        raise InputError(
            f"input {name!r}: {len(raw)} bytes of data for shape {shape} of {datatype} "
            f"({count * dtype.itemsize} expected)"
        )
    return Tensor(name, datatype, shape, np.frombuffer(raw, dtype=dtype).reshape(shape), params)


def tensor_from_json(name: str, datatype: str, shape: list[int], data: Any, params: dict[str, Any]) -> Tensor:
    """A tensor from the JSON ``data`` field (nested or flat, row-major); BYTES elements are UTF-8 strings."""
    count = element_count(shape, name)
    if datatype == "BYTES":
        strings = list(_leaves(data, name))
        if len(strings) != count:
            raise InputError(f"input {name!r}: {len(strings)} data elements for shape {shape} ({count} expected)")
        return Tensor(name, datatype, shape, [_utf8(v, name) for v in strings], params)
    dtype = _dtype(datatype, name)
    # Floats go straight into their type (JSON values are finite, so an inf is an overflow); integers through
    # 64 bits, then range-checked.
    wide = dtype if dtype.kind == "f" else _WIDE[dtype.kind]
    try:
        with np.errstate(over="ignore"):
            array = np.fromiter(_checked(_leaves(data, name), dtype.kind, datatype, name), dtype=wide)
    except OverflowError:
        raise InputError(f"input {name!r}: a value is out of range for {datatype}") from None
    if array.size != count:
        raise InputError(f"input {name!r}: {array.size} data elements for shape {shape} ({count} expected)")
    if dtype.kind == "f" and not np.isfinite(array).all():
        raise InputError(f"input {name!r}: a value is out of range for {datatype}")
    return Tensor(name, datatype, shape, narrow(array, datatype, name).reshape(shape), params)


def tensor_from_values(name: str, datatype: str, shape: list[int], values: Any, params: dict[str, Any]) -> Tensor:
    """A numeric tensor from already typed values (a gRPC ``*_contents`` field): range-checked into ``datatype``."""
    count = element_count(shape, name)
    dtype = _dtype(datatype, name)
    if len(values) != count:
        raise InputError(f"input {name!r}: {len(values)} values for shape {shape} ({count} expected)")
    array = np.empty(count, dtype=_WIDE[dtype.kind])
    for start in range(0, count, VALUES_CHUNK):  # one C call per chunk: the GIL can pass between them
        array[start : start + VALUES_CHUNK] = values[start : start + VALUES_CHUNK]
    return Tensor(name, datatype, shape, narrow(array, datatype, name).reshape(shape), params)


_WIDE: dict[str, Any] = {"b": np.bool_, "i": np.int64, "u": np.uint64, "f": np.float64}


def narrow(array: np.ndarray[Any, Any], datatype: str, name: str) -> np.ndarray[Any, Any]:
    """``array`` cast to ``datatype``, refusing (400) any value the type cannot hold rather than wrapping it."""
    dtype = _dtype(datatype, name)
    if array.size and dtype.kind in "iu":
        info = np.iinfo(dtype)
        if int(array.min()) >= info.min and int(array.max()) <= info.max:
            return array.astype(dtype)
        raise InputError(f"input {name!r}: values must lie in [{info.min}, {info.max}] for {datatype}")
    if array.size and dtype.kind == "f":
        finite = np.isfinite(array)  # inf and NaN are FP values; only a finite value too large for the type is refused
        limit = float(np.finfo(dtype).max)
        if np.abs(array[finite]).max(initial=0.0) > limit:
            raise InputError(f"input {name!r}: a value is out of range for {datatype} (largest {limit:g})")
    return array.astype(dtype)


def _checked(values: Any, kind: str, datatype: str, name: str) -> Any:
    """The leaves of a numeric JSON tensor, type-checked one by one (a string or a float is not an integer)."""
    for value in values:
        if kind == "b":
            ok = isinstance(value, bool)
        elif kind == "f":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok:
            raise InputError(f"input {name!r}: {_short(value, 40)} is not a {datatype} value")
        yield value


def _utf8(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise InputError(f"input {name!r}: BYTES data in JSON must be strings (send files as binary data)")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"input {name!r}: a BYTES string is not valid Unicode (a lone surrogate)") from None


def _dtype(datatype: str, name: str) -> np.dtype[Any]:
    try:
        return DTYPES[datatype]
    except KeyError:
        raise InputError(f"input {name!r}: unknown datatype {_short(datatype, 40)}") from None


def _leaves(data: Any, name: str) -> Any:
    """The scalars of nested lists, row-major, without recursion (a deep list cannot exhaust the stack)."""
    if not isinstance(data, list):
        yield data
        return
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                if len(stack) >= MAX_DIMS:
                    raise InputError(f"input {name!r}: data is nested deeper than {MAX_DIMS} levels")
                stack.append(iter(value))
                break
            yield value
        else:
            stack.pop()


def tensor_bytes(tensor: Tensor) -> bytes:
    """The binary form of an output tensor."""
    if tensor.datatype == "BYTES":
        return join_bytes_elements(list(tensor.data))
    return np.ascontiguousarray(tensor.data, dtype=DTYPES[tensor.datatype]).tobytes()


def tensor_json_data(tensor: Tensor) -> list[Any]:
    """The JSON ``data`` of an output tensor: flat, row-major; BYTES as strings."""
    if tensor.datatype == "BYTES":
        return [e.decode("utf-8", errors="replace") for e in tensor.data]
    flat: list[Any] = np.asarray(tensor.data).reshape(-1).tolist()
    return flat
