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

The pose the views are taken in (``pose``), what their pixels hold (``channels``), how large a point is drawn
(``splat``) and the rotations training shows (``rotation``) are params (``pointcloud_views``); their dataclass
defaults are the historical map, which a model file without them keeps. ``unirep train`` picks the pose from the
training data unless the run sets it (``fit_training_params``): a data set that keeps an up axis trains on the
file's axes with rotations about it (the historical map, best on upright shapes), any other in the canonical pose
with rotations over SO(3) (best on arbitrarily posed shapes); and it draws each point as a square the size of the
gaps between points (``TRAINING_SPLAT``), so that a sparse cloud is a surface rather than scattered dots; measured
in ``benchmarks/train_accuracy.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from unirep_errors import UndecodableInputError

from .base import BaseAdapter, as_chw, encode_png
from .pointcloud_io import POINTCLOUD_FORMATS, read_points
from .pointcloud_views import CHANNEL_KINDS, POSES, looks_upright, project_views, views_of
from .serving import ServingDefaults
from .training_augment import ROTATIONS, augment_points

__all__ = ["PointCloudAdapter", "PointCloudParams", "farthest_point_sample", "normalize_points", "project_views"]

SAMPLINGS = ("fps", "random")
UPRIGHT_TRAINING: dict[str, Any] = {"pose": "as_given", "rotation": "up"}
POSED_TRAINING: dict[str, Any] = {"pose": "canonical", "rotation": "so3"}
"""What ``unirep train`` uses for data that keeps an up axis, and for data in any pose (unless the run sets them)."""
TRAINING_SPLAT = 0.75
"""The point size ``unirep train`` draws with unless the run sets one: on the training clouds of the benchmark's
shape sets, a nearest neighbour on the maps was right on 92-96 of 216 with one pixel a point and 186-193 with
this size (0.25-1.0 tried, 0.75 best or within one cloud of it at 64 and 224 pixels, in any pose and upright)."""
FPS_POOL_FACTOR = 2
"""FPS runs on at most this many times ``num_points`` candidates (the official test set: FPS 4096 of 8192)."""


@dataclass(frozen=True)
class PointCloudParams:
    num_points: int = 4096
    image_size: int = 224
    sampling: str = "fps"
    format: str | None = None
    """Format hint (``ply``, ``pcd``, ``xyz``, ``pts``, ``off``, ``obj``, ``npy``, ``json``); sniffed when None."""
    pose: str = "as_given"
    """The frame the views are taken in: ``as_given``, ``canonical`` or ``upright`` (``pointcloud_views``)."""
    channels: str = "near"
    """``+``-joined kinds (``near``, ``far``, ``density``), each in three views: 3 channels per kind."""
    rotation: str = "up"
    """Training only: rotations the augmentation draws, ``up`` (about the y axis), ``so3`` (any) or ``none``."""
    splat: float = 0.0
    """Each point drawn as a square reaching this many typical gaps between points to each side
    (``pointcloud_views``); 0: one pixel a point."""

    def __post_init__(self) -> None:
        if not isinstance(self.num_points, int) or not 16 <= self.num_points <= 1_000_000:
            raise ValueError(f"num_points must be an int in [16, 1000000], got {self.num_points!r}")
        if not isinstance(self.image_size, int) or not 8 <= self.image_size <= 2048:
            raise ValueError(f"image_size must be an int in [8, 2048], got {self.image_size!r}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if self.format is not None and self.format.lower().lstrip(".") not in POINTCLOUD_FORMATS:
            raise ValueError(f"format must be one of {POINTCLOUD_FORMATS} or None, got {self.format!r}")
        if self.pose not in POSES:
            raise ValueError(f"pose must be one of {POSES}, got {self.pose!r}")
        kinds = self.channels.split("+") if isinstance(self.channels, str) else []
        if not kinds or not set(kinds) <= set(CHANNEL_KINDS) or len(set(kinds)) != len(kinds):
            raise ValueError(f"channels must be '+'-joined distinct kinds of {CHANNEL_KINDS}, got {self.channels!r}")
        if self.rotation not in ROTATIONS:
            raise ValueError(f"rotation must be one of {ROTATIONS}, got {self.rotation!r}")
        if isinstance(self.splat, bool) or not isinstance(self.splat, int | float) or not 0 <= self.splat <= 4:
            raise ValueError(f"splat must be a number in [0, 4], got {self.splat!r}")

    @property
    def num_channels(self) -> int:
        return 3 * len(self.channels.split("+"))


class PointCloudAdapter(BaseAdapter[PointCloudParams]):
    """PLY, PCD, XYZ/PTS, OFF/OBJ (sampled), NPY, JSON -> 3k x image_size x image_size maps (k channel kinds)."""

    name: ClassVar[str] = "pointcloud"
    params_type: ClassVar[type[Any]] = PointCloudParams
    heavy_imports: ClassVar[tuple[str, ...]] = ("open3d",)
    serving: ClassVar[ServingDefaults] = ServingDefaults(label_set="modelnet40")
    small_params: ClassVar[dict[str, Any]] = {"image_size": 64, "num_points": 512}
    training_choices: ClassVar[tuple[str, ...]] = ("pose", "rotation", "splat")
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
        return (p.num_channels, p.image_size, p.image_size)

    def fit_training_params(
        self, cached: Sequence[torch.Tensor], params: dict[str, Any], given: dict[str, Any]
    ) -> dict[str, Any]:
        """The pose (and the rotations to train with) from the training clouds, and the point size, where the run
        did not set them."""
        chosen: dict[str, Any] = {"splat": TRAINING_SPLAT}
        if "pose" in given:
            chosen["rotation"] = "so3" if given["pose"] == "canonical" else "up"
        else:
            chosen.update(UPRIGHT_TRAINING if looks_upright([t.numpy() for t in cached]) else POSED_TRAINING)
        return {**params, **{k: v for k, v in chosen.items() if k not in given}}

    def _decode(self, data: bytes, p: PointCloudParams) -> torch.Tensor:
        points = read_points(data, p.format, self.limits, mesh_samples=FPS_POOL_FACTOR * p.num_points)
        return points_to_views(points, p)

    def preview(self, tensor: torch.Tensor, **params: Any) -> bytes:
        """The views side by side (front, side, top), one row per channel kind; near / dense = white, empty = black."""
        chw = as_chw(tensor, "pointcloud")
        size = chw.shape[1]
        rows: list[np.ndarray] = []
        for start in range(0, len(chw), 3):
            panels: list[np.ndarray] = []
            for i, plane in enumerate(chw[start : start + 3]):
                if i:
                    panels.append(np.full((size, 4), 96, dtype=np.uint8))
                panels.append(np.clip(np.rint(plane * 255.0), 0, 255).astype(np.uint8))
            if rows:
                rows.append(np.full((4, rows[0].shape[1]), 96, dtype=np.uint8))
            rows.append(np.concatenate(panels, axis=1))
        return encode_png(np.concatenate(rows, axis=0), min_side=224)

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
        return views_of(cached.numpy(), p.image_size, p.pose, p.channels, p.splat)

    def augment(self, cached: torch.Tensor, generator: torch.Generator, **params: Any) -> torch.Tensor:
        """Training only: a rotation (``rotation``), per-axis scale, jitter and thinning, then pose and projection.

        The rotation comes before the pose is taken, so a canonical map still sees how unsure its frame is for
        symmetric shapes, exactly as a rotated input at serving time would show it."""
        p = self.resolve_params(**params)
        points = augment_points(cached.numpy(), generator, p.rotation)
        return views_of(points, p.image_size, p.pose, p.channels, p.splat)


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
    return views_of(sampled, p.image_size, p.pose, p.channels, p.splat)


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
