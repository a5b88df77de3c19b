"""Turn what a caller holds (a path, bytes, a PIL image, a numpy array, nested lists) into a request body.

Files and bytes go as a multipart upload in the field ``file``, which every modality accepts; arrays for point
clouds and time series go as JSON. numpy and Pillow are recognised by duck typing (``tolist``, ``save``) and
never imported here, so the SDK stays importable on machines that have neither.
"""

from __future__ import annotations

import datetime as dt
import io
import mimetypes
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from ._constants import MODALITIES, MODALITY_NAME
from .errors import InputFileNotFoundError, InvalidInputError, UnknownModalityError, UnsupportedInputTypeError

__all__ = ["ArrayInput", "FileInput", "ImageInput", "Payload", "encode_input"]

FileInput: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview"
"""A path to a file, or the file's bytes."""
ImageInput: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | Any"
"""A path, bytes, or a PIL image (sent losslessly as PNG)."""
ArrayInput: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | Sequence[Any] | Any"
"""A path or bytes of a file, or an array: nested lists or anything with ``tolist()`` (numpy, torch)."""

# Magic bytes of the formats the service reads, so that bytes without a filename still carry a useful
# Content-Type. The server sniffs content itself; this is a courtesy for proxies, logs and error messages.
_MAGIC: tuple[tuple[int, bytes, str, str], ...] = (
    (0, b"\xff\xd8\xff", "image/jpeg", ".jpg"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (0, b"GIF8", "image/gif", ".gif"),
    (0, b"BM", "image/bmp", ".bmp"),
    (8, b"WEBP", "image/webp", ".webp"),
    (8, b"WAVE", "audio/wav", ".wav"),
    (8, b"AVI ", "video/x-msvideo", ".avi"),
    (0, b"fLaC", "audio/flac", ".flac"),
    (0, b"OggS", "audio/ogg", ".ogg"),
    (0, b"ID3", "audio/mpeg", ".mp3"),
    (4, b"ftyp", "video/mp4", ".mp4"),
    (0, b"\x1a\x45\xdf\xa3", "video/webm", ".webm"),
    (0, b"\x93NUMPY", "application/x-npy", ".npy"),
    (0, b"ply", "application/x-ply", ".ply"),
)
_EXTRA_TYPES = {".npy": "application/x-npy", ".ply": "application/x-ply", ".csv": "text/csv"}


@dataclass(frozen=True)
class Payload:
    """The body of one request: either a multipart file or a JSON document."""

    files: dict[str, tuple[str, bytes, str]] | None = None
    json: dict[str, Any] | None = None

    @property
    def size(self) -> int:
        """Bytes of the upload (0 for JSON), for logs and progress."""
        return len(self.files["file"][1]) if self.files else 0


def encode_input(modality: str, data: Any, *, timestamps: Sequence[Any] | None = None) -> Payload:
    """The payload for ``data`` sent to ``modality``; raises an ``InvalidInputError`` before any I/O."""
    if not MODALITY_NAME.match(modality):
        raise UnknownModalityError(f"{modality!r} is not a modality name (e.g. one of {', '.join(MODALITIES)})")
    if timestamps is not None and modality != "timeseries":
        raise InvalidInputError("timestamps are only meaningful for the timeseries modality")
    if isinstance(data, str | os.PathLike):
        if timestamps is not None:
            raise InvalidInputError("timestamps go with an array; a file carries its own (e.g. a CSV time column)")
        return _file_payload(Path(data))
    if isinstance(data, bytes | bytearray | memoryview):
        if timestamps is not None:
            raise InvalidInputError("timestamps go with an array; a file carries its own (e.g. a CSV time column)")
        return _bytes_payload(bytes(data), name="upload")
    if modality == "image" and _is_pil_image(data):
        return _bytes_payload(_pil_to_png(data), name="image.png")
    if modality == "pointcloud":
        return Payload(json={"points": _points(data)})
    if modality == "timeseries":
        series = _series(data)
        body: dict[str, Any] = {"data": series}
        if timestamps is not None:
            body["timestamps"] = _timestamps(timestamps, len(series))
        return Payload(json=body)
    accepted = "a path, bytes or a PIL image" if modality == "image" else "a path or bytes"
    raise UnsupportedInputTypeError(f"{modality} input must be {accepted}; got {type(data).__name__}")


def _file_payload(path: Path) -> Payload:
    if not path.is_file():
        raise InputFileNotFoundError(f"no such file: {path}")
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise InputFileNotFoundError(f"cannot read {path}: {exc.strerror or exc}") from exc
    content_type = _EXTRA_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    return Payload(files={"file": (path.name, content, content_type or sniff_content_type(content)[0])})


def _bytes_payload(content: bytes, *, name: str) -> Payload:
    if not content:
        raise InvalidInputError("the payload is empty")
    content_type, suffix = sniff_content_type(content)
    filename = name if "." in name else name + suffix
    return Payload(files={"file": (filename, content, content_type)})


def sniff_content_type(content: bytes) -> tuple[str, str]:
    """(Content-Type, file suffix) recognised from magic bytes; octet-stream when nothing matches."""
    for offset, magic, content_type, suffix in _MAGIC:
        if content[offset : offset + len(magic)] == magic:
            return content_type, suffix
    return "application/octet-stream", ""


def _is_pil_image(obj: Any) -> bool:
    return type(obj).__module__.startswith("PIL.") and hasattr(obj, "save") and hasattr(obj, "mode")


def _pil_to_png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _as_lists(data: Any) -> Any:
    """Nested Python lists from numpy/torch arrays or sequences, without importing either library."""
    if hasattr(data, "tolist"):
        return data.tolist()
    if isinstance(data, Sequence) and not isinstance(data, str):
        return [_as_lists(item) for item in data]
    return data


def _points(data: Any) -> list[list[float]]:
    points = _as_lists(data)
    if not isinstance(points, list) or not points:
        raise InvalidInputError("a point cloud must be a non-empty N x 3 array")
    for i, row in enumerate(points):
        if not isinstance(row, list) or len(row) != 3:
            raise InvalidInputError(f"a point cloud must be an N x 3 array; row {i} is {row!r}")
    return points


def _series(data: Any) -> list[list[float]]:
    series = _as_lists(data)
    if not isinstance(series, list) or not series:
        raise InvalidInputError("a time series must be a non-empty T x V array (or a 1-D array for one variable)")
    if not isinstance(series[0], list):
        return [[value] for value in series]  # univariate: T values become T x 1
    width = len(series[0])
    for i, row in enumerate(series):
        if not isinstance(row, list) or len(row) != width:
            raise InvalidInputError(f"a time series must be a T x V array; row {i} has a different width than row 0")
    return series


def _timestamps(timestamps: Sequence[Any], length: int) -> list[str]:
    # Iterate rather than tolist(): numpy datetime64[ns] turns into bare ints with tolist(), but each of its
    # scalars prints as ISO 8601; pandas Timestamps are datetimes.
    values = list(timestamps)
    if len(values) != length:
        raise InvalidInputError(f"got {len(values)} timestamps for {length} time steps")
    return [v.isoformat() if isinstance(v, dt.date | dt.datetime) else str(v) for v in values]
