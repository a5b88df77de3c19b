"""Point-cloud adapter: a cloud (or mesh) -> three orthogonal depth maps (front, side, top) -> 3 x S x S.

The official point model (P2P-style) projects with a *learned* network and ships no weights; this adapter
uses a parameter-free stand-in that keeps the same contract (C' = 3 images of S x S): the cloud is cleaned
(NaN/inf dropped), centred on its centroid and scaled into the unit sphere (the official ``pc_normalize``), a
fixed number of points is sampled (farthest point sampling, as the official test set is prepared), and each
view renders the nearest point per pixel. Everything after reading is invariant to point order, translation and
uniform scale: points are put into a canonical (lexicographic) order before sampling, FPS starts from the point
farthest from the centroid, and each pixel keeps the maximum (nearest) depth, which no ordering can change.

Depth values: near = 1, far = 1/3, empty pixel = 0, so the far side of the sphere stays distinguishable from
empty space. Views (right-handed, y up): front looks down -z (u = x, v = y, depth = z); side looks down -x
(u = -z, v = y, depth = x); top looks down -y (u = x, v = -z, depth = y).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from unirep_errors import UndecodableInputError

from .base import BaseAdapter, as_chw, encode_png
from .pointcloud_io import POINTCLOUD_FORMATS, read_points
from .serving import ServingDefaults
from .training_augment import augment_points

__all__ = ["PointCloudAdapter", "PointCloudParams", "farthest_point_sample", "normalize_points", "project_views"]

SAMPLINGS = ("fps", "random")
FPS_POOL_FACTOR = 2
"""FPS runs on at most this many times ``num_points`` candidates (the official test set: FPS 4096 of 8192)."""


@dataclass(frozen=True)
class PointCloudParams:
    num_points: int = 4096
    image_size: int = 224
    sampling: str = "fps"
    format: str | None = None
    """Format hint (``ply``, ``pcd``, ``xyz``, ``pts``, ``off``, ``obj``, ``npy``, ``json``); sniffed when None."""

    def __post_init__(self) -> None:
        if not isinstance(self.num_points, int) or not 16 <= self.num_points <= 1_000_000:
            raise ValueError(f"num_points must be an int in [16, 1000000], got {self.num_points!r}")
        if not isinstance(self.image_size, int) or not 8 <= self.image_size <= 2048:
            raise ValueError(f"image_size must be an int in [8, 2048], got {self.image_size!r}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if self.format is not None and self.format.lower().lstrip(".") not in POINTCLOUD_FORMATS:
            raise ValueError(f"format must be one of {POINTCLOUD_FORMATS} or None, got {self.format!r}")


class PointCloudAdapter(BaseAdapter[PointCloudParams]):
    """PLY, PCD, XYZ/PTS, OFF/OBJ (sampled), NPY, JSON -> 3 x image_size x image_size depth maps."""

    name: ClassVar[str] = "pointcloud"
    params_type: ClassVar[type[Any]] = PointCloudParams
    heavy_imports: ClassVar[tuple[str, ...]] = ("open3d",)
    serving: ClassVar[ServingDefaults] = ServingDefaults(label_set="modelnet40")
    small_params: ClassVar[dict[str, Any]] = {"image_size": 64, "num_points": 512}
    json_example: ClassVar[dict[str, Any] | None] = {"points": [[0.0, 0.1, 0.2], [0.5, -0.3, 0.9]]}

    @classmethod
    def request_hints(cls, filename: str | None, content_type: str) -> dict[str, Any]:
        """The file format from the upload's extension or JSON content type; otherwise the decoder sniffs it."""
        if filename and "." in filename:
            ext = filename.rsplit(".", 1)[-1].lower()
            if ext in POINTCLOUD_FORMATS:
                return {"format": ext}
        if content_type == "application/json":
            return {"format": "json"}
        return {}

    def output_shape(self, **params: Any) -> tuple[int, int, int]:
        p = self.resolve_params(**params)
        return (3, p.image_size, p.image_size)

    def _decode(self, data: bytes, p: PointCloudParams) -> torch.Tensor:
        points = read_points(data, p.format, self.limits, mesh_samples=FPS_POOL_FACTOR * p.num_points)
        return points_to_views(points, p)

    def preview(self, tensor: torch.Tensor, **params: Any) -> bytes:
        """The three depth maps side by side (front, side, top), near = white, empty = black."""
        chw = as_chw(tensor, "pointcloud")
        gap = np.full((chw.shape[1], 4), 96, dtype=np.uint8)
        panels: list[np.ndarray] = []
        for i, plane in enumerate(chw):
            if i:
                panels.append(gap)
            panels.append(np.clip(np.rint(plane * 255.0), 0, 255).astype(np.uint8))
        return encode_png(np.concatenate(panels, axis=1), min_side=224)

    def decode_for_training(self, data: bytes, **params: Any) -> torch.Tensor:
        """Training caches the sampled unit-sphere points (N x 3), so that augmentation acts before projection."""
        p = self.resolve_params(**params)
        points = read_points(data, p.format, self.limits, mesh_samples=FPS_POOL_FACTOR * p.num_points)
        points = points[np.isfinite(points).all(axis=1)]
        if len(points) == 0:
            raise UndecodableInputError("point cloud has 0 finite points; need at least 1")
        return torch.from_numpy(sample_points(normalize_points(points), p.num_points, p.sampling))

    def training_input(self, cached: torch.Tensor, **params: Any) -> torch.Tensor:
        p = self.resolve_params(**params)
        return project_views(cached.numpy(), p.image_size)

    def augment(self, cached: torch.Tensor, generator: torch.Generator, **params: Any) -> torch.Tensor:
        """Training only: rotation about the up axis, per-axis scale, jitter and thinning, then projection."""
        p = self.resolve_params(**params)
        return project_views(augment_points(cached.numpy(), generator), p.image_size)


def points_to_views(points: np.ndarray, p: PointCloudParams) -> torch.Tensor:
    """The whole geometric pipeline after reading: clean, normalize, sample, project."""
    finite = np.isfinite(points).all(axis=1)
    points = points[finite]
    if len(points) == 0:
        dropped = int((~finite).sum())
        raise UndecodableInputError(
            f"point cloud has 0 finite points{f' ({dropped} NaN/inf dropped)' if dropped else ''}; need at least 1"
        )
    unit = normalize_points(points)
    sampled = sample_points(unit, p.num_points, p.sampling)
    return project_views(sampled, p.image_size)


def normalize_points(points: np.ndarray) -> np.ndarray:
    """Centroid to the origin, farthest point to radius 1 (``pc_normalize``), in float64 for exact invariance.

    The cloud is first divided by a power of two near its largest coordinate: exact in binary floating point (so
    it changes no result), and it keeps the mean and the squared radii of coordinates near 1e308 from overflowing.
    """
    peak = float(np.abs(points).max())
    if peak > 0:
        points = points / 2.0 ** int(np.frexp(peak)[1])
    centred = points - points.mean(axis=0)
    radius = float(np.sqrt((centred**2).sum(axis=1)).max())
    if not radius > 0:
        raise UndecodableInputError(f"all {len(points)} points coincide; a cloud needs extent to be projected")
    return centred / radius


def sample_points(unit: np.ndarray, num_points: int, sampling: str) -> np.ndarray:
    """Exactly ``num_points`` points, chosen independently of the input order (see the module docstring)."""
    order = np.lexsort((unit[:, 2], unit[:, 1], unit[:, 0]))
    unit = unit[order]
    n = len(unit)
    if n <= num_points:
        # Repeating points leaves every depth map unchanged and gives the fixed count a batch needs.
        return unit[np.resize(np.arange(n), num_points)]
    rng = np.random.default_rng(0)
    if sampling == "random":
        return unit[np.sort(rng.choice(n, num_points, replace=False))]
    pool = FPS_POOL_FACTOR * num_points
    if n > pool:
        unit = unit[np.sort(rng.choice(n, pool, replace=False))]
    return unit[farthest_point_sample(unit, num_points)]


def farthest_point_sample(points: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``k`` farthest-point samples, starting from the point farthest from the origin.

    Own code rather than open3d's ``farthest_point_down_sample``: that one starts from index 0 (so its result
    depends on the input order) and needs an open3d cloud even for NPY/JSON input. This is the standard O(N k)
    loop with a running minimum distance, on float64 coordinate columns (float32 rounding would make near-ties
    order-dependent) with preallocated buffers, so each of the k steps is a few vectorized passes over N values.
    """
    n = len(points)
    if k >= n:
        return np.arange(n)
    xs, ys, zs = (np.ascontiguousarray(points[:, i], dtype=np.float64) for i in range(3))
    min_d = np.full(n, np.inf)
    d = np.empty(n)
    t = np.empty(n)
    chosen = np.empty(k, dtype=np.int64)
    current = int(np.argmax(xs * xs + ys * ys + zs * zs))
    for i in range(k):
        chosen[i] = current
        np.subtract(xs, xs[current], out=d)
        np.multiply(d, d, out=d)
        np.subtract(ys, ys[current], out=t)
        np.multiply(t, t, out=t)
        np.add(d, t, out=d)
        np.subtract(zs, zs[current], out=t)
        np.multiply(t, t, out=t)
        np.add(d, t, out=d)
        np.minimum(min_d, d, out=min_d)
        current = int(np.argmax(min_d))
    return chosen


def project_views(unit: np.ndarray, size: int) -> torch.Tensor:
    """Render front, side and top depth maps of points inside the unit sphere: 3 x size x size, float32."""
    x, y, z = unit[:, 0], unit[:, 1], unit[:, 2]
    views = ((x, y, z), (-z, y, x), (x, -z, y))  # (u, v, depth toward the viewer)
    maps = []
    for u, v, depth in views:
        col = np.clip(np.floor((u + 1.0) * 0.5 * size), 0, size - 1).astype(np.int64)
        row = np.clip(np.floor((1.0 - v) * 0.5 * size), 0, size - 1).astype(np.int64)
        value = torch.from_numpy(((depth + 2.0) / 3.0).astype(np.float32))
        flat = torch.zeros(size * size, dtype=torch.float32)
        flat.scatter_reduce_(0, torch.from_numpy(row * size + col), value, reduce="amax", include_self=True)
        maps.append(flat.view(size, size))
    return torch.stack(maps)
