"""What a time-series model takes: its representation, variable count and window, and how a series is fitted to it.

Real series come with any number of variables and any length, so these are parameters, not constants:

- ``representation``: ``"embedding"`` (the learned Corrformer-style embedding, the official map) or weight-free
  image maps joined by ``+`` and stacked as channels: joint maps of all variables at once (``values``, ``jrp``)
  and per-variable maps (``gasf``, ``gadf``, ``rp``, ``cwt``, ``plot``, ``quantile``, ``fold``); see
  ``timeseries_maps``.
- ``num_vars``: the variables the model was trained on; 0 means "any": joint maps take any count as they are,
  per-variable maps are averaged over variables.
- ``length_mode``: ``"resample"`` (linear interpolation of the whole series to the model's length, any T >= 2),
  ``"paa"`` (a longer series averaged over equal spans, one per step of the map: nothing between the picked
  steps is dropped; a shorter one resampled up),
  ``"pad"`` (a series no longer than the map keeps its steps and is padded with zeros; a longer one is resampled
  down) or ``"window"`` (the last ``seq_len`` steps, as the official forecaster reads its input; shorter series
  are refused).
- ``normalize``: ``"series"`` (each variable of each series to zero mean and unit variance over its own steps:
  any series, any scale, but its level and amplitude are gone) or ``"dataset"`` (each variable by the mean and
  standard deviation of the training data, ``data_mean`` / ``data_std``, stored with the model: levels and
  amplitudes survive, which is what tells apart, say, vowels by their cepstral coefficients).
- ``seq_len``: the window (``window``) or the embedding's length (``embedding`` + ``resample``); ``image_size``:
  the side of a weight-free map, to which the series is fitted; ``time_steps`` (0: ``image_size``) its width
  where it is wider than tall (``image_size`` rows by ``time_steps`` columns, the series fitted to
  ``time_steps``): a long series keeps more of its steps for a fraction of a square map's cost. Only the kinds with
  time across the columns (or, for ``quantile``, the share of time) can be wide (``values``, ``cwt``, ``plot``,
  ``quantile``).

A trained model's params come from its data (``fit_params``, and ``unirep train``'s choice among candidate maps)
and travel in its checkpoint. ``preset="corrformer"`` names the official configuration (48 hourly steps of 11
variables, d_model 768, reshaped to 1 x 192 x 192).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .timeseries_embedding import EMBEDDING_LAYOUTS, TIME_FEATURES_PER_FREQ
from .timeseries_maps import FOLDED, IMAGE_KINDS, JOINT_KINDS, ROWED_KINDS

__all__ = [
    "DEFAULT_REPRESENTATION",
    "LENGTH_MODES",
    "NORMALIZATIONS",
    "PRESETS",
    "TimeSeriesParams",
    "dataset_scale",
    "fit_params",
]

DEFAULT_REPRESENTATION = "values+gasf+gadf+rp"
"""The served default: the value image keeps every variable and how they move together at any variable count;
the per-variable maps beside it carried the univariate sets (benchmarks/ts_representations.py, figures in
benchmarks/RESULTS.md). A trained model's representation is chosen on its data."""
LENGTH_MODES = ("resample", "paa", "pad", "window")
NORMALIZATIONS = ("series", "dataset")
MAX_FOLD_SIDE = 256
"""A fold's side: 256 x 256 is 65536 steps a variable, the most any map is made of."""
MAX_TIME_STEPS = 4096
"""The widest map: 4096 columns, as many as a fold of 64 x 64."""
MAX_FITTED_LENGTH = 512
"""``fit_params`` caps the learned embedding's length: longer series are resampled down to it."""

PRESETS: dict[str, dict[str, Any]] = {
    "corrformer": {
        "representation": "embedding",
        "embedding_layout": "reshape",
        "seq_len": 48,
        "num_vars": 11,
        "d_model": 768,
        "freq": "h",
        "length_mode": "window",
    },
}
"""Named configurations; explicit params override a preset's values."""


@dataclass(frozen=True)
class TimeSeriesParams:
    preset: str = ""
    representation: str = DEFAULT_REPRESENTATION
    num_vars: int = 0
    seq_len: int = 64
    length_mode: str = "resample"
    image_size: int = 64
    time_steps: int = 0
    d_model: int = 64
    embedding_layout: str = "time_axis"
    freq: str = "h"
    normalize: str = "series"
    data_mean: tuple[float, ...] = ()
    data_std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for name in ("data_mean", "data_std"):  # JSON (a model file's params) carries them as lists
            object.__setattr__(self, name, _floats(name, getattr(self, name)))
        _check_int("seq_len", self.seq_len, 2, 100_000)
        _check_int("num_vars", self.num_vars, 0, 100_000)
        _check_int("image_size", self.image_size, 4, 1024)
        if self.time_steps:
            _check_int("time_steps", self.time_steps, 4, MAX_TIME_STEPS)
        _check_int("d_model", self.d_model, 1, 65536)
        if self.preset and self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        kinds = self.kinds
        known = {"embedding", *IMAGE_KINDS}
        if not kinds or not set(kinds) <= known or len(set(kinds)) != len(kinds):
            raise ValueError(f"representation must be 'embedding' or '+'-joined {sorted(IMAGE_KINDS)}, got {kinds}")
        if FOLDED in kinds and self.image_size > MAX_FOLD_SIDE:
            raise ValueError(f"a fold holds image_size squared steps: image_size must be at most {MAX_FOLD_SIDE}")
        if self.width != self.image_size and not set(kinds) <= set(ROWED_KINDS):
            raise ValueError(f"a map that is not square (time_steps) holds only {sorted(ROWED_KINDS)}, got {kinds}")
        if "embedding" in kinds and (len(kinds) > 1 or self.num_vars == 0):
            raise ValueError("the learned embedding stands alone and needs a fixed num_vars (>= 1)")
        if self.length_mode not in LENGTH_MODES:
            raise ValueError(f"length_mode must be one of {LENGTH_MODES}, got {self.length_mode!r}")
        if self.length_mode == "pad" and "embedding" in kinds:
            raise ValueError("length_mode 'pad' is for the image maps; the learned embedding resamples or windows")
        self._check_normalization()
        if self.embedding_layout not in EMBEDDING_LAYOUTS:
            raise ValueError(f"embedding_layout must be one of {EMBEDDING_LAYOUTS}, got {self.embedding_layout!r}")
        if self.freq not in TIME_FEATURES_PER_FREQ:
            raise ValueError(f"freq must be one of {sorted(TIME_FEATURES_PER_FREQ)}, got {self.freq!r}")

    def _check_normalization(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        if self.normalize == "series":
            return
        if self.num_vars == 0 or len(self.data_mean) != self.num_vars or len(self.data_std) != self.num_vars:
            raise ValueError("normalize 'dataset' needs a fixed num_vars and data_mean, data_std with one value each")
        if not all(s > 0 for s in self.data_std):
            raise ValueError("data_std must be positive")

    @classmethod
    def build(cls, **params: Any) -> TimeSeriesParams:
        """Params with a named preset's values filled in under the explicit ones."""
        name = params.get("preset") or ""
        base = PRESETS.get(name, {}) if isinstance(name, str) else {}
        return cls(**{**base, **params})

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k.strip() for k in str(self.representation).split("+"))

    @property
    def is_embedding(self) -> bool:
        return self.kinds == ("embedding",)

    @property
    def n_time_features(self) -> int:
        return TIME_FEATURES_PER_FREQ[self.freq]

    @property
    def length(self) -> int:
        """Steps after fitting (the window or whole series resampled): what the embedding or the map is made of
        (``image_size`` squared where a fold lays them out ``image_size`` to a row)."""
        if self.is_embedding:
            return self.seq_len
        return self.image_size**2 if FOLDED in self.kinds else self.width

    @property
    def width(self) -> int:
        """Columns of a weight-free map: ``time_steps``, or ``image_size`` for a square one."""
        return self.time_steps or self.image_size

    @property
    def backbone_in_chans(self) -> int:
        """Channels of the image UniRepLKNet sees: 1 after the embedding, else one per joint kind and one per
        per-variable kind and variable (one per kind when variables are pooled)."""
        if self.is_embedding:
            return 1
        return sum(1 if k in JOINT_KINDS else max(self.num_vars, 1) for k in self.kinds)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _floats(name: str, value: Any) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a list of numbers, got {value!r}") from None
    if not all(np.isfinite(out)):
        raise ValueError(f"{name} must be finite")
    return out


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")


def fit_params(series: Sequence[np.ndarray], **params: Any) -> dict[str, Any]:
    """A trained model's params from its training series (each ``(T, V)``): their variable count and length.

    All series must have the same number of variables. ``window`` takes the shortest length (every series then
    yields a full window); ``resample`` takes the median length, capped at ``MAX_FITTED_LENGTH``. Explicit
    ``params`` (representation, image_size, ...) are kept; ``num_vars``/``seq_len`` given explicitly win too.
    """
    if not series:
        raise ValueError("no series to fit the time-series params to")
    widths = sorted({int(np.shape(s)[1]) for s in series})
    if len(widths) != 1:
        raise ValueError(f"the series have different numbers of variables {widths}; a model takes one count")
    lengths = np.asarray([np.shape(s)[0] for s in series])
    mode = params.get("length_mode", TimeSeriesParams.length_mode)
    fitted = int(lengths.min()) if mode == "window" else int(min(np.median(lengths), MAX_FITTED_LENGTH))
    out = {"num_vars": widths[0], "seq_len": max(fitted, 2), **params}
    if out.get("normalize") == "dataset" and not params.get("data_mean"):
        out.update(dataset_scale(series))
    return TimeSeriesParams.build(**out).as_dict()


def dataset_scale(series: Sequence[np.ndarray]) -> dict[str, list[float]]:
    """Per-variable mean and standard deviation over every step of every (finite) training series."""
    steps = np.concatenate([np.asarray(s, dtype=np.float64) for s in series], axis=0)
    mean = np.nanmean(steps, axis=0)
    std = np.sqrt(np.nanvar(steps, axis=0) + 1e-5)
    return {
        "data_mean": [float(v) for v in np.nan_to_num(mean)],
        "data_std": [float(v) for v in np.nan_to_num(std, nan=1.0)],
    }
