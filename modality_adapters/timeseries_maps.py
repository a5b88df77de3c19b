"""Series -> image maps with no weights: value images, joint and per-variable recurrence plots, Gramian angular
fields, Morlet scalograms, line plots.

UniRepLKNet is an image network; these maps lay a series out so that a 2-D convolution sees its structure.
Two families:

- per-variable maps picture each variable against itself, ``(V, n, n)``: a Gramian angular field puts the
  (polar-encoded) value pairs ``(i, j)`` at pixel ``(i, j)``, a recurrence plot the distance between the values at
  ``i`` and ``j``, a scalogram the wavelet energy at scale (row) and time (column), a line plot the value (row)
  at each step (column), a quantile plot the same of its sorted values (how long it spends at each level), a fold
  the variable's ``n * n`` steps laid out ``n`` to a row. They say nothing about how the variables move together,
  and a model that takes any variable count must average them.
- joint maps picture all variables at once, ``(1, n, n)`` whatever ``V`` is: the value image lays the variables
  out as bands of rows over time (columns), so a convolution spans neighbouring variables and sees them rise and
  fall together or against each other; the joint recurrence plot is the distance between the V-dimensional
  states at ``i`` and ``j``.

Each function takes a ``(n, V)`` window (already normalized per variable) and returns float32 in about [-1, 1];
the adapter stacks the requested kinds as channels. The kinds with time across the columns (``ROWED_KINDS``: the
value image, the scalogram, the line plot) also take ``rows``, so a map can be wider than it is tall: ``rows`` x
``n``, a long series kept at ``n`` steps while the network's cost grows with ``rows * n`` only. The pairwise kinds
(Gramian fields, recurrence plots) are ``n`` x ``n`` by nature.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

__all__ = [
    "FOLDED",
    "IMAGE_KINDS",
    "JOINT_KINDS",
    "ROWED_KINDS",
    "fold",
    "gadf",
    "gasf",
    "joint_recurrence",
    "line_plot",
    "paa",
    "pad",
    "quantile_plot",
    "recurrence",
    "render",
    "resample",
    "scalogram",
    "value_image",
]

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


def paa(values: np.ndarray, length: int) -> np.ndarray:
    """``(T, V)`` -> ``(length, V)``: a longer series cut into ``length`` equal spans, each replaced by its mean
    (piecewise aggregate approximation); a series no longer than ``length`` is resampled up as ``resample`` does.

    Picking ``length`` of 1460 steps by interpolation reads one step in 45 and drops the spikes between them (the
    aliasing of any downsampling without a low-pass); the span means keep every step's contribution. Spans with
    fractional ends are weighted exactly: the mean is the integral of the step function over the span.
    """
    t = values.shape[0]
    if t <= length:
        return resample(values, length)
    integral = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)], axis=0)  # at 0..T
    edges = np.linspace(0.0, float(t), length + 1)
    at_edges = np.stack([np.interp(edges, np.arange(t + 1), integral[:, v]) for v in range(values.shape[1])], axis=1)
    out: np.ndarray = np.diff(at_edges, axis=0) / np.diff(edges)[:, None]
    return out


def pad(values: np.ndarray, length: int) -> np.ndarray:
    """``(T, V)`` with ``T <= length`` -> ``(length, V)``: the steps as they are, then zeros (the normalized mean).

    A short series keeps its timing: stretching 7 steps to 64 would invent 57 values between them.
    """
    out = np.zeros((length, values.shape[1]), dtype=values.dtype)
    out[: values.shape[0]] = values
    return out


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


def scalogram(x: np.ndarray, rows: int | None = None) -> np.ndarray:
    """|Morlet CWT| at ``rows`` (default ``n``) log-spaced scales (row 0: finest), computed in the frequency domain,
    log-scaled to [-1, 1]: ``(V, rows, n)``.

    Scales run from 1 sample to half the window, so every row resolves a period the window can hold; the series is
    mirrored before the FFT so that its ends do not wrap into each other.
    """
    n = x.shape[0]
    padded = np.concatenate([x, x[::-1]], axis=0).T  # (V, 2n): symmetric extension
    freqs = 2.0 * np.pi * np.fft.fftfreq(2 * n)
    scales = np.geomspace(1.0, max(n / 2.0, 1.0), rows or n)
    arg = scales[:, None] * freqs[None, :] - MORLET_W0
    bank = np.where(freqs[None, :] > 0, np.pi**-0.25 * np.exp(-0.5 * arg**2), 0.0) * np.sqrt(scales)[:, None]
    coeffs = np.fft.ifft(np.fft.fft(padded, axis=1)[:, None, :] * bank[None], axis=2)[:, :, :n]
    energy = np.log1p(np.abs(coeffs))
    top = energy.max(axis=(1, 2), keepdims=True)
    return (2.0 * energy / np.maximum(top, _EPS) - 1.0).astype(np.float32)


def value_image(x: np.ndarray, rows: int | None = None) -> np.ndarray:
    """The values themselves, time across the columns and the variables down the ``rows`` (default ``n``) rows:
    ``(1, rows, n)``.

    Variable ``v`` of ``V`` fills rows ``[v * rows / V, (v + 1) * rows / V)``, so a 3 x 3 kernel on a band boundary sees
    two variables at the same steps: how they move together is local. With more variables than rows, each row
    is the mean of the variables that fall on it. Values (unit variance per variable) are squashed by ``tanh(x / 2)``
    into [-1, 1], which keeps their order and leaves a 2-sigma excursion at 0.76.
    """
    n, v = x.shape
    height = rows or n
    edges = np.floor(np.arange(height + 1) * v / height).astype(int)
    bands = [x[:, lo : max(hi, lo + 1)].mean(axis=1) for lo, hi in itertools.pairwise(edges)]
    return np.tanh(np.stack(bands, axis=0) / 2.0)[None].astype(np.float32)


def line_plot(x: np.ndarray, rows: int | None = None) -> np.ndarray:
    """The series drawn as a line, per variable ``(V, rows, n)`` (``rows`` default ``n``): time across the columns,
    the value down the rows (the top row high), each column lit from the value at its step to halfway to its
    neighbours' values, with a soft edge of about one row. In [-1, 1] (-1 where the line is not).

    A univariate series in the value image is one row repeated ``n`` times; drawn, its shape (peaks, slopes, how
    far apart) is an edge the convolution can follow, the way the eye reads a plot. Values (unit variance) are
    placed by ``tanh(x / 2)``, as the value image squashes them.
    """
    n = x.shape[0]
    y = np.tanh(x.T / 2.0)  # (V, n) in (-1, 1)
    left = np.concatenate([y[:, :1], (y[:, :-1] + y[:, 1:]) / 2.0], axis=1)
    right = np.concatenate([(y[:, :-1] + y[:, 1:]) / 2.0, y[:, -1:]], axis=1)
    lo = np.minimum(y, np.minimum(left, right))[:, None, :]  # (V, 1, n)
    hi = np.maximum(y, np.maximum(left, right))[:, None, :]
    height = rows or n
    levels = np.linspace(1.0, -1.0, height)[None, :, None]  # row 0 the highest value
    width = 2.0 / max(height - 1, 1)
    gap = np.maximum(np.maximum(lo - levels, levels - hi), 0.0) / width
    return (2.0 * np.exp(-0.5 * gap**2) - 1.0).astype(np.float32)


def quantile_plot(x: np.ndarray, rows: int | None = None) -> np.ndarray:
    """Each variable's values sorted, drawn as ``line_plot`` draws the series: ``(V, rows, n)``, the columns the
    share of the steps below a value (its quantile), the rows the value.

    How long a series spends at each level, whatever the order: an appliance's power is off, idling or heating
    for its own shares of the time, and when it switched is noise. A 1-NN on the sorted values of each series is
    right on 0.81 of ACSF1's held-out test series, on the series themselves 0.54. A network could learn such shares
    from the value image (a threshold and the global mean), but not from a hundred examples.
    """
    return line_plot(np.sort(x, axis=0), rows)


def fold(x: np.ndarray) -> np.ndarray:
    """Each variable's ``n * n`` steps laid out ``n`` to a row, in reading order: ``(V, n, n)``, ``tanh(x / 2)`` as
    the value image squashes values.

    Every other map sees ``n`` steps; a 32 x 32 map of a 1460-step series keeps one value in 45. The fold keeps
    ``n * n`` (1024): neighbouring steps are neighbouring pixels along a row, and a pixel's neighbours above and
    below are ``n`` steps away, so the network's first layers see the series' local shape at 32 times the
    resolution, and its later, coarser stages the longer spans.
    """
    steps, v = x.shape
    side = math.isqrt(steps)
    if side * side != steps:
        raise ValueError(f"a fold needs a square number of steps, got {steps}")
    return np.tanh(x.T.reshape(v, side, side) / 2.0).astype(np.float32)


def joint_recurrence(x: np.ndarray) -> np.ndarray:
    """Distance between the V-dimensional states at ``i`` and ``j``: ``(1, n, n)``, the largest scaled to 1, in [-1, 1].

    Unlike per-variable plots averaged, a state recurs only when every variable returns to its value together.
    """
    sq = (x**2).sum(axis=1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0))  # n x n, never n x n x V
    return (2.0 * dist / max(float(dist.max()), _EPS) - 1.0)[None].astype(np.float32)


IMAGE_KINDS = {
    "values": value_image,
    "jrp": joint_recurrence,
    "gasf": gasf,
    "gadf": gadf,
    "rp": recurrence,
    "cwt": scalogram,
    "plot": line_plot,
    "quantile": quantile_plot,
    "fold": fold,
}
"""The weight-free map kinds by name, as ``TimeSeriesParams.representation`` spells them."""
JOINT_KINDS = frozenset({"values", "jrp"})
"""Kinds that make one channel from all variables; the others make one channel per variable."""
FOLDED = "fold"
"""The kind made of ``n * n`` steps rather than ``n``."""
ROWED_KINDS: dict[str, Callable[[np.ndarray, int | None], np.ndarray]] = {
    "values": value_image,
    "cwt": scalogram,
    "plot": line_plot,
    "quantile": quantile_plot,
}
"""Kinds with time (for the quantile plot, the share of time) across the columns and any number of rows: the only
ones a map wider than tall can hold."""


def render(x: np.ndarray, kinds: tuple[str, ...], pool_variables: bool, rows: int | None = None) -> np.ndarray:
    """Stack the kinds' maps as channels: one per joint kind, and per per-variable kind ``V`` channels, or one (their
    mean over variables) when pooling. ``rows`` (default: square) is the height of a map of ``ROWED_KINDS`` only.

    Pooling is how one model takes any number of variables with per-variable kinds: the mean map over variables
    has a fixed channel count (and loses how the variables relate; joint kinds keep it at any count). With a fold
    among the kinds ``x`` has ``n * n`` steps; the other kinds see them averaged down to ``n`` spans.
    """
    side = math.isqrt(x.shape[0]) if FOLDED in kinds else x.shape[0]
    spans = x if side == x.shape[0] else paa(x, side)
    maps = []
    for kind in kinds:
        rowed = ROWED_KINDS.get(kind)
        m = rowed(spans, rows) if rowed else IMAGE_KINDS[kind](x if kind == FOLDED else spans)
        maps.append(m.mean(axis=0, keepdims=True) if pool_variables and kind not in JOINT_KINDS else m)
    return np.concatenate(maps, axis=0)
