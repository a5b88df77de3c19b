"""Reading point clouds and meshes from bytes into an N x 3 float64 array.

Binary and structured formats (PLY, PCD, OFF, OBJ) go through open3d, which reads only from a path: the bytes
are written to a private temporary directory that is removed on every exit. Before that, the header's point
count is checked against the limit and against the body length, so that a tiny file claiming a billion
vertices is refused without open3d allocating for them. Plain text (XYZ, PTS), NPY and JSON are parsed with
numpy, strictly: open3d's text readers silently skip malformed lines, and a user deserves to hear about them.
Meshes are sampled uniformly by area with a fixed seed (not open3d's sampler, whose seed is process-global).

open3d's readers report errors only as text on the process's stdout/stderr and then return what they have, which
can be uninitialised memory (an ASCII PLY with ``inf`` values reads as 4.6e-310 and the like, different in every
process). So the native output of a read is captured, and any error it reports, or a point count other than the
header's, makes the file undecodable: a reader that reported an error is never trusted.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from unirep_errors import InputTooLargeError, UndecodableInputError, UnsupportedMediaTypeError

from .base import AdapterLimits

__all__ = ["POINTCLOUD_FORMATS", "read_points", "sample_mesh", "sniff_format"]

POINTCLOUD_FORMATS = ("ply", "pcd", "xyz", "pts", "off", "obj", "npy", "json")


def sniff_format(data: bytes) -> str | None:
    """Recognise the format from content (magic bytes or header keywords); None when nothing matches."""
    head = data[:512].lstrip()
    if data.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"ply"):
        return "ply"
    if head[:1] in (b"[", b"{"):
        return "json"
    first = head.split(b"\n", 1)[0].strip()
    if first in (b"OFF", b"COFF", b"NOFF", b"CNOFF") or re.match(rb"^OFF\s+\d", first):
        return "off"
    if re.search(rb"^\s*(VERSION|FIELDS)\s", head, re.MULTILINE) and b"DATA" in data[:4096]:
        return "pcd"
    if re.search(rb"^\s*(v|vn|f|o|g|mtllib)\s", head, re.MULTILINE) and re.search(rb"^\s*v\s", head, re.MULTILINE):
        return "obj"
    if head[:1].isdigit() or head[:1] in (b"-", b"+", b"."):
        return "xyz"
    return None


def read_points(data: bytes, fmt: str | None, limits: AdapterLimits, mesh_samples: int) -> np.ndarray:
    """Decode ``data`` (format ``fmt`` or sniffed) into finite-or-not N x 3 float64 points."""
    sniffed = sniff_format(data)
    fmt = (fmt or sniffed or "").lower().lstrip(".")
    if fmt not in POINTCLOUD_FORMATS:
        raise UnsupportedMediaTypeError(
            "not a recognised point cloud; send PLY, PCD, XYZ/PTS, OFF/OBJ mesh, NPY or a JSON array of N x 3",
            supported=list(POINTCLOUD_FORMATS),
        )
    if fmt in ("xyz", "pts"):
        return _read_text(data, fmt, limits)
    if fmt == "npy":
        return _read_npy(data, limits)
    if fmt == "json":
        return _read_json(data, limits)
    declared = _check_header(data, fmt, limits)
    return _read_open3d(data, fmt, mesh_samples, declared)


def _too_many(n: int, limits: AdapterLimits) -> InputTooLargeError:
    return InputTooLargeError(
        f"point cloud has {n} points; the limit is {limits.max_points}", points=n, limit=limits.max_points
    )


def _as_points(array: Any, what: str) -> np.ndarray:
    try:
        pts = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UndecodableInputError(f"{what}: points must be numbers within the float range") from exc
    if pts.ndim == 1 and pts.size == 0:
        pts = pts.reshape(0, 3)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise UndecodableInputError(f"{what}: expected N x 3 (or more columns), got shape {pts.shape}")
    return np.ascontiguousarray(pts[:, :3])


def _read_text(data: bytes, fmt: str, limits: AdapterLimits) -> np.ndarray:
    lines = [ln for ln in data.replace(b",", b" ").splitlines() if ln.strip() and not ln.lstrip().startswith(b"#")]
    if lines and len(lines[0].split()) == 1 and lines[0].strip().isdigit():
        lines = lines[1:]  # the PTS count line (XYZ and PTS look alike otherwise, so it is accepted for both)
    if len(lines) > limits.max_points:
        raise _too_many(len(lines), limits)
    rows: list[list[float]] = []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        try:
            values = [float(f) for f in fields[:3]]
        except ValueError as exc:
            raise UndecodableInputError(f"{fmt.upper()} line {number}: {line[:60]!r} is not numeric") from exc
        if len(values) < 3:
            raise UndecodableInputError(f"{fmt.upper()} line {number} has {len(values)} values; need x y z")
        rows.append(values)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def _read_npy(data: bytes, limits: AdapterLimits) -> np.ndarray:
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        # Header only (bounded in size by numpy): no allocation for the body yet.
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(buf)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(buf)
        else:
            raise ValueError(f"unsupported NPY version {version}")
    except Exception as exc:
        raise UndecodableInputError(f"NPY header is corrupt: {exc}") from exc
    if dtype.hasobject or dtype.kind not in "iuf":
        raise UndecodableInputError(f"NPY array must be numeric, got dtype {dtype}")
    if len(shape) != 2 or shape[1] < 3:
        raise UndecodableInputError(f"NPY array must be N x 3 (or more columns), got shape {shape}")
    if shape[0] > limits.max_points:
        raise _too_many(int(shape[0]), limits)
    if int(np.prod(shape)) * dtype.itemsize > len(data):
        raise UndecodableInputError(f"NPY body is truncated: header says {shape} of {dtype}, file is {len(data)} B")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:
        raise UndecodableInputError("NPY array cannot be read (truncated or corrupt)") from exc
    return _as_points(array, "NPY")


def _read_json(data: bytes, limits: AdapterLimits) -> np.ndarray:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UndecodableInputError(f"point cloud JSON is invalid: {exc}") from exc
    if isinstance(obj, dict):
        obj = obj.get("points")
    if not isinstance(obj, list):
        raise UndecodableInputError('point cloud JSON must be an N x 3 array or {"points": [[x, y, z], ...]}')
    if len(obj) > limits.max_points:
        raise _too_many(len(obj), limits)
    if any(not isinstance(row, list) or any(isinstance(v, bool | str) for v in row) for row in obj):
        raise UndecodableInputError("point cloud JSON rows must be arrays of numbers [x, y, z]")
    if len({len(row) for row in obj}) > 1:
        raise UndecodableInputError("point cloud JSON rows have different lengths")
    return _as_points(obj, "JSON")


def _header_count(data: bytes, fmt: str) -> tuple[int, int, bool]:
    """(declared points, header length, binary?) from a PLY, PCD, OFF or OBJ header."""
    text = data[:65536].decode("latin-1")
    if fmt == "ply":
        end = text.find("end_header")
        m = re.search(r"^element\s+vertex\s+(\d+)", text[: max(end, 0)], re.MULTILINE)
        if end < 0 or m is None:
            raise UndecodableInputError("PLY header is incomplete (no 'element vertex' or 'end_header')")
        binary = re.search(r"^format\s+binary", text[:end], re.MULTILINE) is not None
        return int(m.group(1)), text.index("\n", end) + 1 if "\n" in text[end:] else len(data), binary
    if fmt == "pcd":
        m = re.search(r"^POINTS\s+(\d+)", text, re.MULTILINE)
        d = re.search(r"^DATA\s+(\w+)[^\n]*\n", text, re.MULTILINE)
        if m is None or d is None:
            raise UndecodableInputError("PCD header is incomplete (no POINTS or DATA line)")
        return int(m.group(1)), d.end(), d.group(1) != "ascii"
    if fmt == "off":
        tokens = re.sub(r"#[^\n]*", "", text).split()
        if tokens and tokens[0].endswith("OFF"):
            tokens = tokens[1:]
        if not tokens or not tokens[0].isdigit():
            raise UndecodableInputError("OFF header has no vertex count")
        return int(tokens[0]), 0, False
    return len(re.findall(rb"^\s*v\s", data, re.MULTILINE)), 0, False


def _check_header(data: bytes, fmt: str, limits: AdapterLimits) -> int:
    """The declared point count, checked against the limit and the body's length."""
    count, header_len, binary = _header_count(data, fmt)
    if count > limits.max_points:
        raise _too_many(count, limits)
    body = len(data) - header_len
    min_record = 12 if binary else 6  # three float32s, or "0 0 0\n"
    if count * min_record > body:
        raise UndecodableInputError(
            f"{fmt.upper()} declares {count} points but its body has only {body} bytes (truncated?)", points=count
        )
    return count


@contextlib.contextmanager
def _native_output() -> Iterator[list[str]]:
    """Capture what native code writes to fds 1 and 2 (open3d's only error channel); the text is yielded after."""
    captured: list[str] = []
    with tempfile.TemporaryFile() as sink:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield captured
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            captured.append(sink.read(65536).decode("utf-8", "replace"))


def _reader_failed(text: str) -> bool:
    lowered = text.lower()
    return "error" in lowered or "fail" in lowered or "warning" in lowered


def _read_open3d(data: bytes, fmt: str, mesh_samples: int, declared: int) -> np.ndarray:
    import open3d as o3d

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Warning)
    with tempfile.TemporaryDirectory(prefix="unirep-pc-") as tmp:
        path = Path(tmp) / f"cloud.{fmt}"
        with open(path, "wb") as f:
            f.write(data)
        mesh_like = fmt in ("off", "obj") or (fmt == "ply" and _ply_has_faces(data))
        with _native_output() as output:
            if mesh_like:
                mesh = o3d.io.read_triangle_mesh(path)
                vertices = np.asarray(mesh.vertices, dtype=np.float64).copy()
                triangles = np.asarray(mesh.triangles, dtype=np.int64).copy()
            else:
                cloud = o3d.io.read_point_cloud(path, format=fmt)
                vertices = np.asarray(cloud.points, dtype=np.float64).reshape(-1, 3).copy()
    if _reader_failed(output[0]):
        raise UndecodableInputError(
            f"the {fmt.upper()} reader reported an error: the file is malformed (non-numeric or truncated values?)"
        )
    if fmt != "obj" and len(vertices) != declared:
        raise UndecodableInputError(
            f"the {fmt.upper()} header declares {declared} points but {len(vertices)} could be read", points=declared
        )
    if mesh_like and len(triangles) and len(vertices):
        return sample_mesh(vertices, triangles, mesh_samples)
    return vertices.reshape(-1, 3)


def _ply_has_faces(data: bytes) -> bool:
    """A PLY mesh (faces present) is sampled on its surface like OFF/OBJ, not reduced to its vertices."""
    header = data[: data.find(b"end_header")] if b"end_header" in data[:65536] else b""
    match = re.search(rb"^element\s+face\s+(\d+)", header, re.MULTILINE)
    return match is not None and int(match.group(1)) > 0


def sample_mesh(vertices: np.ndarray, triangles: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Area-weighted uniform samples on a triangle mesh, deterministic for a given mesh (fixed seed)."""
    if triangles.min() < 0 or triangles.max() >= len(vertices):
        raise UndecodableInputError("mesh faces refer to vertices that do not exist")
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    areas = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    total = areas.sum()
    if not np.isfinite(total) or total <= 0:
        return np.unique(vertices, axis=0)  # degenerate faces: fall back to the vertices themselves
    rng = np.random.default_rng(seed)
    tri = rng.choice(len(triangles), size=count, p=areas / total)
    r1, r2 = np.sqrt(rng.random(count)), rng.random(count)
    w = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], axis=1)
    return w[:, :1] * a[tri] + w[:, 1:2] * b[tri] + w[:, 2:] * c[tri]
