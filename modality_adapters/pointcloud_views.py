"""The geometry between sampled points and the point-cloud map: the pose the views are taken in, and what a pixel
of each view holds.

Pose (``pose`` param). Three orthogonal views of a shape change with its orientation, so a network that sees them
must either be shown every orientation (rotation augmentation) or be given the shape in a frame of its own:

- ``as_given``: the file's axes (y up), the historical behaviour, right for scanned data with a known up axis.
- ``canonical``: the principal axes of the sampled points (largest variance along x, then y, then z), each axis
  pointing where the points' third moment along it is positive (the heavier tail of the shape), and the frame
  made right-handed by flipping the axis whose third moment is least certain. A rotated copy of a cloud then
  gives the same map, up to the ambiguities of symmetric shapes (equal variances, zero skew), which rotation
  augmentation teaches the network to tolerate.
- ``upright``: the up axis (y) kept, the horizontal axes turned to the principal axes of the horizontal
  coordinates (sign by third moment): pose removed about the up axis only, for data with a known up.

Channels (``channels`` param): ``+``-joined kinds, each rendered in the three views (front, side, top), so the map
has ``3 * len(kinds)`` channels: ``near`` the nearest depth per pixel (near = 1, far = 1/3, empty = 0: the
historical map), ``far`` the farthest depth on the same scale (the back surface, or the near one for one point),
``density`` the points per pixel relative to the busiest pixel of that view (how much surface lies along the ray).

Point size (``splat`` param). A pixel per point leaves a sparse cloud as scattered dots: a few hundred points in a
224-pixel view light under 2 % of it, and two samplings of the same surface share hardly a pixel, so nothing local
in the picture says which surface it is. With ``splat`` > 0 each point is drawn as a square whose half-width is
``splat`` times the typical gap between the cloud's points in a view (the view's side over the square root of its
distinct points), so a surface reads as a surface at any point count and any map size; the nearest depth still
wins where squares overlap. 0 is the historical one pixel per point.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

__all__ = [
    "CHANNEL_KINDS",
    "POSES",
    "canonical_pose",
    "looks_upright",
    "project_views",
    "splat_radius",
    "upright_pose",
    "views_of",
]

POSES = ("as_given", "canonical", "upright")
CHANNEL_KINDS = ("near", "far", "density")


def _skew_signs(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: +1 or -1 so that the third moment becomes non-negative, and that moment's magnitude."""
    skew = (coords**3).mean(axis=0)
    return np.where(skew < 0, -1.0, 1.0), np.abs(skew)


def _distinct(points: np.ndarray, known: np.ndarray | None) -> np.ndarray:
    """The cloud's distinct points: ``known`` where the caller found them already, else found here."""
    return np.unique(points, axis=0) if known is None else known


def canonical_pose(points: np.ndarray, distinct: np.ndarray | None = None) -> np.ndarray:
    """``points`` (N x 3, inside the unit sphere) rotated about the origin into their principal frame.

    Rotating about the origin rather than about the sample mean keeps every point inside the unit sphere, which
    the projection needs; the axes themselves are those of the covariance about the mean. The moments are taken
    over distinct points: a small cloud is padded to the point count by repeating points chosen by their order,
    which would otherwise weigh them twice, differently for a rotated copy. ``distinct``: those points, where the
    caller has them already.
    """
    distinct = _distinct(points, distinct)
    centred = distinct - distinct.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    axes = vectors[:, ::-1].copy()  # columns by decreasing variance
    signs, strength = _skew_signs(centred @ axes)
    axes *= signs
    if np.linalg.det(axes) < 0:  # a reflection would mirror the shape: flip the least certain axis instead
        axes[:, int(np.argmin(strength))] *= -1.0
    return np.asarray(points @ axes)


UPRIGHT_ALIGNMENT = 0.95
"""A cloud is aligned with the up axis when one of its principal axes is within about 18 degrees of it. Under
random rotations that happens to about 15 % of clouds (six caps of the sphere), so a median decides clearly."""


def up_alignment(points: np.ndarray) -> float:
    """How closely one principal axis of the cloud's distinct points follows the up (y) axis: |cos| of the angle."""
    distinct = np.unique(points, axis=0)
    centred = distinct - distinct.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    return float(np.abs(vectors[1]).max())


def looks_upright(clouds: list[np.ndarray]) -> bool:
    """Whether a data set keeps an up axis (scanned objects standing on the floor), rather than arbitrary poses:
    most of its clouds have a principal axis along y."""
    return bool(np.median([up_alignment(c) for c in clouds]) >= UPRIGHT_ALIGNMENT) if clouds else False


def upright_pose(points: np.ndarray, distinct: np.ndarray | None = None) -> np.ndarray:
    """``points`` rotated about the up (y) axis so that the horizontal principal axis is x (sign by third moment)."""
    distinct = _distinct(points, distinct)  # as in ``canonical_pose``: repeated points are not weighed twice
    horizontal = distinct[:, [0, 2]] - distinct[:, [0, 2]].mean(axis=0)
    _, vectors = np.linalg.eigh(horizontal.T @ horizontal)
    major = vectors[:, 1] * _skew_signs((horizontal @ vectors[:, 1])[:, None])[0][0]
    c, s = float(major[0]), float(major[1])
    # New x along (c, 0, s); y unchanged; z = x cross y keeps the frame right-handed (a rotation about y).
    rotation = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return np.asarray(points @ rotation.T)


def posed(points: np.ndarray, pose: str, distinct: np.ndarray | None = None) -> np.ndarray:
    if pose == "canonical":
        return canonical_pose(points, distinct)
    if pose == "upright":
        return upright_pose(points, distinct)
    if pose == "as_given":
        return points
    raise ValueError(f"pose must be one of {POSES}, got {pose!r}")


def views_of(
    points: np.ndarray, size: int, pose: str = "as_given", channels: str = "near", splat: float = 0.0
) -> torch.Tensor:
    """The map of sampled unit-sphere points: posed, then each channel kind in the three views. The pose and the
    point size both read the cloud's distinct points, found once here (this runs for every request)."""
    kinds = tuple(channels.split("+"))
    distinct = np.unique(points, axis=0) if pose != "as_given" or splat > 0 else None
    return project_views(posed(points, pose, distinct), size, kinds, splat_radius(points, size, splat, distinct))


def splat_radius(points: np.ndarray, size: int, splat: float, distinct: np.ndarray | None = None) -> int:
    """Half-width in pixels of the square each point is drawn as: ``splat`` times the typical gap between the
    cloud's distinct points (``distinct``, where the caller has them) in a ``size``-pixel view, rounded, and at
    most a sixteenth of the view."""
    if splat <= 0:
        return 0
    gap = size / math.sqrt(len(_distinct(points, distinct)))
    return min(size // 16, round(splat * gap))


def project_views(unit: np.ndarray, size: int, kinds: tuple[str, ...] = ("near",), radius: int = 0) -> torch.Tensor:
    """Render ``kinds`` in the front, side and top views of points inside the unit sphere: 3k x size x size, each
    point a square of half-width ``radius`` pixels (0: one pixel).

    Views (right-handed, y up): front looks down -z (u = x, v = y, depth = z); side looks down -x (u = -z, v = y,
    depth = x); top looks down -y (u = x, v = -z, depth = y).
    """
    x, y, z = unit[:, 0], unit[:, 1], unit[:, 2]
    views = ((x, y, z), (-z, y, x), (x, -z, y))  # (u, v, depth toward the viewer)
    maps: dict[str, list[torch.Tensor]] = {kind: [] for kind in kinds}
    for u, v, depth in views:
        col = np.clip(np.floor((u + 1.0) * 0.5 * size), 0, size - 1).astype(np.int64)
        row = np.clip(np.floor((1.0 - v) * 0.5 * size), 0, size - 1).astype(np.int64)
        index = torch.from_numpy(row * size + col)
        value = torch.from_numpy(((depth + 2.0) / 3.0).astype(np.float32))
        for kind in kinds:
            flat = torch.zeros(size * size, dtype=torch.float32)
            if kind == "near":
                flat.scatter_reduce_(0, index, value, reduce="amax", include_self=True)
            elif kind == "far":  # include_self=False: empty pixels keep 0, hit ones take their smallest depth
                flat.scatter_reduce_(0, index, value, reduce="amin", include_self=False)
            elif kind == "density":
                flat.index_add_(0, index, torch.ones(len(index), dtype=torch.float32))
                flat /= flat.max().clamp_min(1.0)
            else:
                raise ValueError(f"channel kinds are {CHANNEL_KINDS}, got {kind!r}")
            maps[kind].append(flat.view(size, size))
    return torch.cat([_spread(torch.stack(maps[kind]), kind, radius) for kind in kinds])


def _spread(views: torch.Tensor, kind: str, radius: int) -> torch.Tensor:
    """Each lit pixel of the views (V x S x S) widened to a square of half-width ``radius``: the nearest depth
    (``near``), the farthest (``far``) or the summed density (renormalized to each view's busiest pixel) where
    squares overlap. A square filter is a filter along the rows, then along the columns: 2k reads a pixel, not k^2."""
    if radius <= 0:
        return views
    side = 2 * radius + 1

    def square(pool: Callable[..., torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        across = pool(x, (1, side), stride=1, padding=(0, radius))
        return pool(across, (side, 1), stride=1, padding=(radius, 0))

    if kind == "near":
        return square(torch.nn.functional.max_pool2d, views)
    if kind == "far":  # the smallest lit depth nearby; unlit pixels (0) must not win the minimum
        unlit = 2.0
        spread = -square(torch.nn.functional.max_pool2d, -torch.where(views > 0, views, unlit))
        return torch.where(spread < unlit, spread, 0.0)
    summed = square(torch.nn.functional.avg_pool2d, views)
    return summed / summed.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
