"""Train-time augmentations, one function per modality, applied to what an adapter decoded (never at serving).

Each adapter exposes its augmentation as a method (``adapter.augment``) that calls the function here, so that
the transformations sit beside the decoding they perturb while the arithmetic stays in one place. Every function
takes a ``torch.Generator`` so that a seeded run augments identically, and returns a new tensor of the shape the
model expects (the input is never modified in place).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "augment_image",
    "augment_points",
    "augment_series",
    "augment_video_clip",
    "spec_augment",
]


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """An integer in [low, high] inclusive."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def random_resized_crop(
    x: torch.Tensor, generator: torch.Generator, scale: tuple[float, float] = (0.35, 1.0)
) -> torch.Tensor:
    """Crop a random area (fraction ``scale`` of the map, aspect 3/4..4/3) of (..., H, W) and resize it back."""
    height, width = x.shape[-2:]
    for _ in range(10):
        area = _uniform(generator, *scale) * height * width
        aspect = math.exp(_uniform(generator, math.log(3 / 4), math.log(4 / 3)))
        h = round(math.sqrt(area / aspect))
        w = round(math.sqrt(area * aspect))
        if 0 < h <= height and 0 < w <= width:
            top, left = _randint(generator, 0, height - h), _randint(generator, 0, width - w)
            break
    else:
        top, left, h, w = 0, 0, height, width
    crop = x[..., top : top + h, left : left + w]
    lead = crop.shape[:-2]
    flat = crop.reshape(-1, 1, h, w) if crop.ndim != 3 else crop.unsqueeze(0)
    resized = F.interpolate(flat, size=(height, width), mode="bilinear", align_corners=False)
    return resized.reshape(*lead, height, width)


def augment_image(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random resized crop (area 35-100 %) and a horizontal flip half of the time, on the normalized C x H x W."""
    out = random_resized_crop(x, generator)
    if float(torch.rand((), generator=generator)) < 0.5:
        out = out.flip(-1)
    return out.contiguous()


def spec_augment(x: torch.Tensor, generator: torch.Generator, max_fraction: float = 0.375) -> torch.Tensor:
    """SpecAugment on a 1 x mel x frames filter bank: one frequency and one time mask, each up to 37.5 % wide.

    The official speech-commands recipe masks up to 48 of 128 bins and 48 of 128 frames; the fraction keeps
    that proportion at any input size. Masked cells take 0, the normalized mean, as in that recipe.
    """
    out = x.clone()
    mel, frames = out.shape[-2:]
    for axis, size in ((-2, mel), (-1, frames)):
        width = _randint(generator, 0, int(size * max_fraction))
        if width == 0:
            continue
        start = _randint(generator, 0, size - width)
        if axis == -2:
            out[..., start : start + width, :] = 0.0
        else:
            out[..., start : start + width] = 0.0
    return out


def augment_video_clip(clip: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(C, T, H, W) clip: temporal jitter (shift by up to a quarter of the clip, edges repeated), one random
    resized crop (area 50-100 %) shared by every frame, and a horizontal flip half of the time."""
    t = clip.shape[1]
    shift = _randint(generator, -(t // 4), t // 4)
    index = torch.clamp(torch.arange(t) + shift, 0, t - 1)
    out = random_resized_crop(clip[:, index], generator, scale=(0.5, 1.0))
    if float(torch.rand((), generator=generator)) < 0.5:
        out = out.flip(-1)
    return out.contiguous()


def augment_points(unit: np.ndarray, generator: torch.Generator) -> np.ndarray:
    """N x 3 points in the unit sphere: rotated about the up (y) axis, scaled per axis (0.8-1.25), jittered
    (sigma 0.01, clipped at 0.05), thinned (up to 20 % dropped, the rest repeated to keep N), renormalized."""
    n = len(unit)
    angle = _uniform(generator, 0.0, 2 * math.pi)
    c, s = math.cos(angle), math.sin(angle)
    rotation = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    scale = np.array([_uniform(generator, 0.8, 1.25) for _ in range(3)])
    noise = torch.randn((n, 3), generator=generator, dtype=torch.float64).numpy()
    points = (unit @ rotation.T) * scale + np.clip(0.01 * noise, -0.05, 0.05)
    keep = max(1, n - _randint(generator, 0, n // 5))
    order = torch.randperm(n, generator=generator).numpy()[:keep]
    points = points[np.resize(order, n)]
    centred = points - points.mean(axis=0)
    radius = float(np.sqrt((centred**2).sum(axis=1)).max())
    return centred / radius if radius > 0 else centred


def augment_series(x: torch.Tensor, num_values: int, generator: torch.Generator) -> torch.Tensor:
    """1 x T x (V + F) packed window: a random window crop (80-100 % of T) stretched back to T, then the first
    ``num_values`` columns (the series; the rest are time features) scaled per variable (sigma 0.1) and
    jittered (sigma 0.03)."""
    steps = x.shape[-2]
    length = max(2, round(_uniform(generator, 0.8, 1.0) * steps))
    start = _randint(generator, 0, steps - length)
    window = x[..., start : start + length, :]  # 1 x L x C
    stretched = F.interpolate(window.transpose(-1, -2), size=steps, mode="linear", align_corners=True)
    out = stretched.transpose(-1, -2).contiguous()
    values = out[..., :num_values]
    gain = 1.0 + 0.1 * torch.randn((num_values,), generator=generator)
    noise = 0.03 * torch.randn(values.shape, generator=generator)
    out[..., :num_values] = values * gain + noise
    return out
