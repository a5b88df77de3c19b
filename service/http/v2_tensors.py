"""Open Inference Protocol (KServe V2) tensors: the transport-neutral form both fronts (REST, gRPC) parse into and
serialize from, and the two encodings of the REST front: JSON ``data`` arrays and the binary tensor data extension.

A BYTES tensor is a flat list of ``bytes`` elements (the raw files); a numeric tensor is a numpy array of its
shape. In binary form a BYTES element is a 4-byte little-endian length followed by its bytes, numeric data is the
row-major little-endian array: both as Triton writes and reads them.
"""

from __future__ import annotations

import json
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
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InputError(f"input {name!r}: shape must be a list of integers, got {shape!r}")
    if any(d < 0 for d in shape):
        raise InputError(f"input {name!r}: shape {shape} has a negative dimension")
    count = int(math.prod(shape))
    if count > MAX_ELEMENTS:
        raise InputError(f"input {name!r}: shape {shape} has too many elements")
    return count


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
    flat = _flatten(data)
    if len(flat) != count:
        raise InputError(f"input {name!r}: {len(flat)} data elements for shape {shape} ({count} expected)")
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise InputError(f"input {name!r}: BYTES data in JSON must be strings (send files as binary data)")
        return Tensor(name, datatype, shape, [v.encode() for v in flat], params)
    dtype = _dtype(datatype, name)
    if not all(isinstance(v, int | float) for v in flat):
        raise InputError(f"input {name!r}: {datatype} data must be numbers")
    return Tensor(name, datatype, shape, np.asarray(flat, dtype=dtype).reshape(shape), params)


def _dtype(datatype: str, name: str) -> np.dtype[Any]:
    try:
        return DTYPES[datatype]
    except KeyError:
        raise InputError(f"input {name!r}: unknown datatype {datatype!r}") from None


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            out.append(value)
        else:
            stack.pop()
    return out


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


def split_binary_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON header and the binary region of a request (the whole body is JSON without the header)."""
    if header_length is None:
        json_part, rest = body, b""
    else:
        if not header_length.strip().isdigit() or int(header_length) > len(body):
            raise InputError(f"{HEADER_LENGTH} must be a byte count within the body, got {header_length!r}")
        json_part, rest = body[: int(header_length)], body[int(header_length) :]
    try:
        header = json.loads(json_part)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"the inference request is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise InputError("the inference request must be a JSON object")
    return header, rest
