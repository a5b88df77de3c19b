"""Train-time augmentations, one function per modality, applied to what an adapter decoded (never at serving).

Each adapter exposes its augmentation as a method (``adapter.augment``) that calls the function here, so that
the transformations sit beside the decoding they perturb while the arithmetic stays in one place. Every function
takes a ``torch.Generator`` so that a seeded run augments identically, and returns a new tensor of the shape the
model expects (the input is never modified in place); the waveform helpers return waveforms, which the audio
adapter then turns into its map.
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
    "augment_waveform",
    "colour_jitter",
    "pitch_shift",
    "random_rotation",
    "spec_augment",
    "time_stretch",
]

ROTATIONS = ("up", "so3", "none")
"""Rotations ``augment_points`` draws: about the up (y) axis, uniformly over all of SO(3), or none."""
STFT_SIZE, STFT_HOP = 512, 128
"""The phase vocoder's frame (32 ms at 16 kHz) and hop, librosa's defaults for speech-rate audio."""
HUE_TURN = 0.1
"""The largest hue turn ``colour_jitter`` draws, in full turns either way (0.1: 36 degrees, torchvision's usual
``hue=0.1``). On generated motion clips any hue (0.5) did no better (``benchmarks/RESULTS.md``), and a small turn
keeps red apart from green for data whose colour means something."""


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


# Pitch shift and time stretch are librosa's algorithms built from torchaudio's phase vocoder and resampler rather
# than librosa itself: torchaudio is already a dependency of every install, and librosa would add numba and
# llvmlite (and numba's numpy ceiling) to the service's runtime dependencies for two functions.


def time_stretch(wave: torch.Tensor, rate: float) -> torch.Tensor:
    """1 x samples -> 1 x round(samples / rate): faster (rate > 1) or slower, pitch unchanged. The algorithm of
    ``librosa.effects.time_stretch``: STFT, phase vocoder, inverse STFT."""
    import torchaudio

    window = torch.hann_window(STFT_SIZE)
    spec = torch.stft(wave, STFT_SIZE, STFT_HOP, window=window, return_complex=True)
    advance = torch.linspace(0, math.pi * STFT_HOP, spec.shape[-2])[..., None]
    stretched = torchaudio.functional.phase_vocoder(spec, rate, advance)
    length = max(1, round(wave.shape[-1] / rate))
    return torch.istft(stretched, STFT_SIZE, STFT_HOP, window=window, length=length)


def pitch_shift(wave: torch.Tensor, sample_rate: int, semitones: float) -> torch.Tensor:
    """1 x samples, pitch moved by ``semitones``, length and tempo kept. The algorithm of
    ``librosa.effects.pitch_shift``: stretch in time by the pitch ratio, then resample back to the original
    duration. The resampling ratio is rounded to 50 Hz steps so that the resampling kernel stays small."""
    import torchaudio

    ratio = 2.0 ** (semitones / 12.0)
    source_rate = max(50, round(sample_rate * ratio / 50) * 50)
    stretched = time_stretch(wave, sample_rate / source_rate)
    out = torchaudio.functional.resample(stretched, source_rate, sample_rate)
    n = wave.shape[-1]
    return out[..., :n] if out.shape[-1] >= n else F.pad(out, (0, n - out.shape[-1]))


def augment_waveform(
    wave: torch.Tensor, sample_rate: int, generator: torch.Generator, probability: float = 0.5
) -> torch.Tensor:
    """1 x samples waveform: with ``probability`` each, a pitch shift of up to 3 semitones either way and a
    time stretch by 0.8-1.25; clips shorter than one vocoder frame are left as they are."""
    out = wave
    if wave.shape[-1] < STFT_SIZE:
        return out
    if float(torch.rand((), generator=generator)) < probability:
        out = pitch_shift(out, sample_rate, _uniform(generator, -3.0, 3.0))
    if float(torch.rand((), generator=generator)) < probability:
        out = time_stretch(out, math.exp(_uniform(generator, math.log(0.8), math.log(1.25))))
    return out


def _hue_rotation(angle: float) -> torch.Tensor:
    """The 3 x 3 rotation of RGB about the grey axis (1, 1, 1) by ``angle`` (Rodrigues): a hue shift that keeps
    grey grey and, being orthogonal, keeps the inner product of any two colour differences."""
    k = torch.full((3,), 1.0 / math.sqrt(3.0), dtype=torch.float64)
    cross = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]], dtype=torch.float64)
    rotation = math.cos(angle) * torch.eye(3, dtype=torch.float64) + math.sin(angle) * cross
    return (rotation + (1.0 - math.cos(angle)) * torch.outer(k, k)).to(torch.float32)


def colour_jitter(rgb: torch.Tensor, generator: torch.Generator, hue: float = HUE_TURN) -> torch.Tensor:
    """(3, ...) RGB in [0, 1], one draw for the whole tensor so that every frame of a clip changes alike:
    brightness and contrast times 0.6-1.4, saturation times 0.6-1.4 or (one time in five) grey, the hue turned by
    up to ``hue`` of a full turn either way, then clipped to [0, 1].

    The same colour map for every pixel keeps each outline and each motion: equal colours stay equal, and the hue
    turn is orthogonal, so the ``motion`` layout's flow products (inner products of colour differences) keep their
    sign. Left out as too strong for a default: inverting the picture (a negative is no scene a camera sees) and
    permuting the channels (red becomes blue: where colour is part of the class, that teaches the wrong class).
    """
    out = rgb * _uniform(generator, 0.6, 1.4)
    out = out.mean() + (out - out.mean()) * _uniform(generator, 0.6, 1.4)
    grey = (0.299 * out[0] + 0.587 * out[1] + 0.114 * out[2]).unsqueeze(0)
    saturation = 0.0 if float(torch.rand((), generator=generator)) < 0.2 else _uniform(generator, 0.6, 1.4)
    out = grey + (out - grey) * saturation
    rotation = _hue_rotation(_uniform(generator, -hue, hue) * 2.0 * math.pi)
    return torch.einsum("ij,j...->i...", rotation, out).clamp(0.0, 1.0)


def augment_video_clip(
    clip: torch.Tensor,
    generator: torch.Generator,
    normalization: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None,
) -> torch.Tensor:
    """(C, T, H, W) clip: temporal jitter (shift by up to a quarter of the clip, edges repeated), one random resized
    crop (area 50-100 %) shared by every frame, and, given the clip's ``normalization`` (mean, std), one
    ``colour_jitter`` of every frame. No flip: in video the direction of a motion is often the label (left vs
    right), and a mirrored clip would teach the model the opposite class.

    The colours are jittered on the clip, before a layout derives its motion channels, so that those stay
    consistent with the frames. From random weights on a few dozen clips a network otherwise learns the colours
    of the training clips: on generated motion clips in random colours the jitter lifted held-out accuracy from
    0.73 and 0.75 to 0.89 and 0.82 (two seeds; ``benchmarks/RESULTS.md``)."""
    t = clip.shape[1]
    shift = _randint(generator, -(t // 4), t // 4)
    index = torch.clamp(torch.arange(t) + shift, 0, t - 1)
    out = random_resized_crop(clip[:, index], generator, scale=(0.5, 1.0))
    if normalization is not None:
        mean, std = (torch.tensor(v, dtype=out.dtype).view(3, 1, 1, 1) for v in normalization)
        out = (colour_jitter(out * std + mean, generator) - mean) / std
    return out.contiguous()


def random_rotation(generator: torch.Generator, kind: str) -> np.ndarray:
    """A 3 x 3 rotation: about the y axis by a uniform angle (``up``), uniform over SO(3) (``so3``: the unit
    quaternion of four normal draws), or the identity (``none``)."""
    if kind == "none":
        return np.eye(3)
    if kind == "so3":
        w, x, y, z = torch.randn(4, generator=generator, dtype=torch.float64).tolist()
        norm = math.sqrt(w * w + x * x + y * y + z * z) or 1.0
        w, x, y, z = w / norm, x / norm, y / norm, z / norm
        return np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
            ]
        )
    if kind != "up":
        raise ValueError(f"rotation must be one of {ROTATIONS}, got {kind!r}")
    angle = _uniform(generator, 0.0, 2 * math.pi)
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def augment_points(unit: np.ndarray, generator: torch.Generator, rotation_kind: str = "up") -> np.ndarray:
    """N x 3 points in the unit sphere: rotated (``random_rotation``), scaled per axis (0.8-1.25), jittered
    (sigma 0.01, clipped at 0.05), thinned (up to 20 % dropped, the rest repeated to keep N), renormalized."""
    n = len(unit)
    rotation = random_rotation(generator, rotation_kind)
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
    """1 x T x (V + F) packed window: a random window crop (90-100 % of T; 80 % moved the daily peaks of 24-step
    series far enough to cost 4 points on ItalyPowerDemand) stretched back to T, then the first
    ``num_values`` columns (the series; the rest are time features) scaled per variable (sigma 0.1) and
    jittered (sigma 0.03)."""
    steps = x.shape[-2]
    length = max(2, round(_uniform(generator, 0.9, 1.0) * steps))
    start = _randint(generator, 0, steps - length)
    window = x[..., start : start + length, :]  # 1 x L x C
    stretched = F.interpolate(window.transpose(-1, -2), size=steps, mode="linear", align_corners=True)
    out = stretched.transpose(-1, -2).contiguous()
    values = out[..., :num_values]
    gain = 1.0 + 0.1 * torch.randn((num_values,), generator=generator)
    noise = 0.03 * torch.randn(values.shape, generator=generator)
    out[..., :num_values] = values * gain + noise
    return out
