"""Series -> image maps with no weights: Gramian angular fields, recurrence plots, Morlet scalograms.

UniRepLKNet is an image network; these maps lay a series out so that a 2-D convolution sees its structure:
a Gramian angular field puts the (polar-encoded) value pairs ``(i, j)`` at pixel ``(i, j)``, a recurrence plot the
distance between the states at ``i`` and ``j``, a scalogram the wavelet energy at scale (row) and time (column).
Each function takes a ``(n, V)`` window (already normalized per variable) and returns ``(V, n, n)`` float32
in about [-1, 1]; the adapter stacks the requested kinds as channels.
"""

from __future__ import annotations

import numpy as np

__all__ = ["IMAGE_KINDS", "gadf", "gasf", "recurrence", "render", "resample", "scalogram"]

_EPS = 1e-8
MORLET_W0 = 6.0
"""Centre frequency of the Morlet wavelet (the usual choice, admissible to good accuracy)."""


def resample(values: np.ndarray, length: int) -> np.ndarray:
    """``(T, V)`` -> ``(length, V)`` by linear interpolation over the same span (T >= 2, or a constant when T == 1)."""
    t = values.shape[0]
    if t == length:
        return values
    src = np.linspace(0.0, 1.0, t)
    dst = np.linspace(0.0, 1.0, length)
    return np.stack([np.interp(dst, src, values[:, v]) for v in range(values.shape[1])], axis=1)


def _angles(x: np.ndarray) -> np.ndarray:
    """Min-max each variable to [-1, 1] and take arccos: the polar encoding of the Gramian angular field."""
    lo, hi = x.min(axis=0, keepdims=True), x.max(axis=0, keepdims=True)
    scaled = np.where(hi - lo > _EPS, 2.0 * (x - lo) / np.maximum(hi - lo, _EPS) - 1.0, 0.0)
    return np.arccos(np.clip(scaled, -1.0, 1.0)).T  # (V, n)


def gasf(x: np.ndarray) -> np.ndarray:
    """Gramian angular summation field ``cos(phi_i + phi_j)``."""
    phi = _angles(x)
    return np.cos(phi[:, :, None] + phi[:, None, :]).astype(np.float32)


def gadf(x: np.ndarray) -> np.ndarray:
    """Gramian angular difference field ``sin(phi_i - phi_j)``."""
    phi = _angles(x)
    return np.sin(phi[:, :, None] - phi[:, None, :]).astype(np.float32)


def recurrence(x: np.ndarray) -> np.ndarray:
    """Unthresholded recurrence plot ``|x_i - x_j|``, scaled per variable so the largest distance is 1, to [-1, 1]."""
    v = x.T  # (V, n)
    dist = np.abs(v[:, :, None] - v[:, None, :])
    top = dist.max(axis=(1, 2), keepdims=True)
    return (2.0 * dist / np.maximum(top, _EPS) - 1.0).astype(np.float32)


def scalogram(x: np.ndarray) -> np.ndarray:
    """|Morlet CWT| at ``n`` log-spaced scales (row 0: finest), computed in the frequency domain, log-scaled to [-1, 1].

    Scales run from 1 sample to half the window, so every row resolves a period the window can hold; the series is
    mirrored before the FFT so that its ends do not wrap into each other.
    """
    n = x.shape[0]
    padded = np.concatenate([x, x[::-1]], axis=0).T  # (V, 2n): symmetric extension
    freqs = 2.0 * np.pi * np.fft.fftfreq(2 * n)
    scales = np.geomspace(1.0, max(n / 2.0, 1.0), n)
    arg = scales[:, None] * freqs[None, :] - MORLET_W0
    bank = np.where(freqs[None, :] > 0, np.pi**-0.25 * np.exp(-0.5 * arg**2), 0.0) * np.sqrt(scales)[:, None]
    coeffs = np.fft.ifft(np.fft.fft(padded, axis=1)[:, None, :] * bank[None], axis=2)[:, :, :n]
    energy = np.log1p(np.abs(coeffs))
    top = energy.max(axis=(1, 2), keepdims=True)
    return (2.0 * energy / np.maximum(top, _EPS) - 1.0).astype(np.float32)


IMAGE_KINDS = {"gasf": gasf, "gadf": gadf, "rp": recurrence, "cwt": scalogram}
"""The weight-free map kinds by name, as ``TimeSeriesParams.representation`` spells them."""


def render(x: np.ndarray, kinds: tuple[str, ...], pool_variables: bool) -> np.ndarray:
    """Stack the kinds' maps as channels: ``(K * V, n, n)``, or ``(K, n, n)`` averaged over variables when pooling.

    Pooling is how one model takes any number of variables: the mean map over variables has a fixed channel count.
    """
    maps = [IMAGE_KINDS[k](x) for k in kinds]
    if pool_variables:
        return np.stack([m.mean(axis=0) for m in maps], axis=0)
    return np.concatenate(maps, axis=0)
