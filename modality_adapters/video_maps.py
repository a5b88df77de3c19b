"""How a clip (C, T, H, W) becomes the video model's map, and back: the layouts.

Image layouts (one 3-channel picture of g x g frames, T = g^2):
- ``official_reshape``: the official code's raw ``reshape(C, gH, gW)``, not a mosaic (frame t lands in rows
  [tH/g, (t + 1)H/g) of the canvas); what official-style checkpoints expect.
- ``grid``: frame t at tile (t // g, t % g), a visual mosaic.

Channel layouts (H x W, frames along channels), for models trained here. In the image layouts a motion is a
relation between tiles far apart on the map, which a from-scratch network does not find on small data; here
the frames of one pixel lie in one column of channels, where the first convolution reads them together:
- ``channels``: the frames stacked, 3T channels (frame t is channels 3t..3t+2).
- ``frames_diffs``: those, then the 3(T - 1) differences of consecutive frames: where something changed.
- ``motion``: the middle frame (appearance), then 2(T - 1) normal-flow-like channels, the products -dI/dt * dI/dx
  and -dI/dt * dI/dy of consecutive frames. For content moving by (u, v) the temporal change is about
  -(u dI/dx + v dI/dy), so -dI/dt * dI/dx is about u (dI/dx)^2 + v dI/dx dI/dy: its sign is the direction of the
  motion whatever the contrast (a dark edge on light and a light edge on dark give the same sign), which a
  difference alone cannot say without the gradient next to it. One frame rather than all of them, and no raw
  differences: on a few dozen clips a network memorises whatever tells the training clips apart, and every frame
  (or a difference, whose sign depends on the contrast) gives it more of that than of the motion
  (``tests/training/test_learnability.py`` measures it).

The channel layouts lead with appearance, so ``channels`` and ``frames_diffs`` give their clip back; a ``motion``
map does not hold every frame, so training caches its clip in the ``channels`` form (``CLIP_FORM``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = [
    "CHANNEL_LAYOUTS",
    "CLIP_FORM",
    "DERIVED_LAYOUTS",
    "LAYOUTS",
    "clip_to_map",
    "layout_channels",
    "map_to_clip",
]

LAYOUTS = ("grid", "official_reshape", "channels", "frames_diffs", "motion")
CHANNEL_LAYOUTS = ("channels", "frames_diffs", "motion")
DERIVED_LAYOUTS = ("frames_diffs", "motion")
"""Layouts with channels computed from the frames: training caches the clip (``CLIP_FORM``) and derives them."""
CLIP_FORM = "channels"


def layout_channels(layout: str, num_frames: int) -> int:
    """Channels of a map of this layout: 3 for the image layouts, more for the channel layouts."""
    if layout == "motion":
        return 3 + 2 * (num_frames - 1)
    if layout == "frames_diffs":
        return 3 * num_frames + 3 * (num_frames - 1)
    return 3 * num_frames if layout == "channels" else 3


def frame_differences(clip: torch.Tensor) -> torch.Tensor:
    """(C, T, H, W) -> the C(T - 1) differences of consecutive frames (pair t is channels Ct..Ct+C-1)."""
    c, t, h, w = clip.shape
    return (clip[:, 1:] - clip[:, :-1]).permute(1, 0, 2, 3).reshape(c * (t - 1), h, w)


def normal_flow(clip: torch.Tensor) -> torch.Tensor:
    """(C, T, H, W) -> the T - 1 products -dt*dx, then the T - 1 products -dt*dy (see the module docstring).

    Products are summed over the colour channels (an edge between two colours of equal brightness moves too) and
    taken to a signed square root, so that they scale with contrast as the frames do.
    """
    dt = clip[:, 1:] - clip[:, :-1]
    middle = 0.5 * (clip[:, 1:] + clip[:, :-1])
    dx = torch.zeros_like(middle)
    dy = torch.zeros_like(middle)
    dx[..., 1:-1] = 0.5 * (middle[..., 2:] - middle[..., :-2])
    dy[..., 1:-1, :] = 0.5 * (middle[..., 2:, :] - middle[..., :-2, :])
    products = torch.cat([-(dt * dx).sum(dim=0), -(dt * dy).sum(dim=0)])
    return products.sign() * products.abs().sqrt()


def clip_to_map(clip: torch.Tensor, layout: str) -> torch.Tensor:
    """(C, T, H, W) -> the model's map: (C, g*H, g*W) with T = g^2 for the image layouts, (k, H, W) for the
    channel layouts (see the module docstring)."""
    c, t, h, w = clip.shape
    if layout in CHANNEL_LAYOUTS:
        if layout == "motion":
            return torch.cat([clip[:, t // 2], normal_flow(clip)]).contiguous()
        frames = clip.permute(1, 0, 2, 3).reshape(t * c, h, w)
        if layout == "channels":
            return frames.contiguous()
        return torch.cat([frames, frame_differences(clip)]).contiguous()
    g = math.isqrt(t)
    if g * g != t:
        raise ValueError(f"the number of frames must be a square number, got {t}")
    if layout == "official_reshape":
        return clip.contiguous().reshape(c, g * h, g * w)
    if layout == "grid":
        # (C, gr, gc, H, W) -> (C, gr, H, gc, W): tile (r, col) holds frame r * g + col.
        return clip.reshape(c, g, g, h, w).permute(0, 1, 3, 2, 4).reshape(c, g * h, g * w).contiguous()
    raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")


def map_to_clip(chw: torch.Tensor, p: Any) -> torch.Tensor:
    """The inverse of ``clip_to_map`` for params ``p`` (``num_frames``, ``layout``): the (3, T, H, W) clip. A
    ``motion`` map holds one frame, so it has no inverse: its clip comes from the ``CLIP_FORM`` cache."""
    t = p.num_frames
    if p.layout == "motion":
        raise ValueError("a motion map holds one frame and its flow, not the clip; decode the clip form instead")
    if p.layout in CHANNEL_LAYOUTS:
        _, h, w = chw.shape
        return chw[: 3 * t].reshape(t, 3, h, w).permute(1, 0, 2, 3).contiguous()
    c, side, _ = chw.shape
    g = math.isqrt(t)
    size = side // g
    if p.layout == "grid":
        return chw.reshape(c, g, size, g, size).permute(0, 1, 3, 2, 4).reshape(c, t, size, size).contiguous()
    return chw.reshape(c, t, size, size)
