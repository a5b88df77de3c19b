"""Time-series adapter: CSV or JSON of any number of variables and any length -> the model's input map.

A series (T x V) is checked against the model's params (``TimeSeriesParams``: variable count, length rule,
representation), fitted to its length (the map's width in steps, or ``image_size`` squared for a fold; resampled,
averaged over spans, padded when shorter than the map, or its last ``seq_len`` steps), normalized per variable
(over its real steps, RevIN-style: ``(x - mean) / sqrt(var + 1e-5)``, biased variance, as the official instance
norm; or by the training data's mean and deviation, ``normalize="dataset"``), and mapped:

- weight-free maps (the default): ``(C, S, W)`` with ``S = image_size`` and ``W = time_steps`` (``S`` unless set:
  a square map; a wide one only of kinds with time across the columns): one channel per joint kind (the value
  image, the joint recurrence plot: all variables in one picture) and ``V`` per per-variable kind, or one (the
  mean over variables) when the model takes any count (``num_vars=0``);
- the learned embedding: float32 ``(1, seq_len, V + F)`` for ``TimeSeriesEmbedding``: columns ``[:V]`` the
  normalized values, ``[V:]`` the F ``timeF`` calendar features of those steps scaled to [-0.5, 0.5] (F = 4 for
  hourly data: hour of day, day of week, day of month, day of year), or zeros without timestamps.

Inputs: a JSON array (T numbers, or T rows of V numbers), a JSON object ``{"values": ..., "timestamps": [...]}``
(ISO 8601 strings or Unix seconds), or CSV with an optional header row and an optional timestamp column.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from unirep_errors import InputTooLargeError, UndecodableInputError, UnsupportedMediaTypeError

from .base import BaseAdapter, as_chw, check_finite, check_size, encode_png, gray_to_uint8
from .serving import ServingDefaults
from .timeseries_embedding import TimeSeriesEmbedding, embedding_map_size
from .timeseries_maps import paa, pad, render, resample
from .timeseries_params import PRESETS, TimeSeriesParams, fit_params
from .timeseries_text import find_stamp_column, is_number, maybe_stamp, parse_stamp, time_features
from .training_augment import augment_series

__all__ = ["TimeSeriesAdapter", "TimeSeriesEmbedding", "TimeSeriesParams", "fit_params", "time_features"]

REVIN_EPS = 1e-5


class TimeSeriesAdapter(BaseAdapter[TimeSeriesParams]):
    """CSV / JSON series (T x V, optional timestamps) -> the model's input map, see the module docstring."""

    name: ClassVar[str] = "timeseries"
    params_type: ClassVar[type[Any]] = TimeSeriesParams
    # No standard label set exists for series classification; bring a checkpoint and its labels file.
    serving: ClassVar[ServingDefaults] = ServingDefaults(label_set=None, num_classes=2, in_chans=1)
    small_params: ClassVar[dict[str, Any]] = {"image_size": 32}
    training_choices: ClassVar[tuple[str, ...]] = ("representation", "length_mode", "normalize", "time_steps")
    json_example: ClassVar[dict[str, Any] | None] = {
        "data": [[0.1, 1.2], [0.3, 1.1]],
        "timestamps": ["2024-01-01T00:00:00", "2024-01-01T01:00:00"],
    }

    def resolve_params(self, **params: Any) -> TimeSeriesParams:
        """As the base class, with a named ``preset``'s values filled in under the explicit params."""
        preset = params.get("preset")
        if isinstance(preset, str) and preset in PRESETS:
            params = {**PRESETS[preset], **params}
        return super().resolve_params(**params)

    def output_shape(self, **params: Any) -> tuple[int, int, int]:
        p = self.resolve_params(**params)
        if p.is_embedding:
            return (1, p.seq_len, p.num_vars + p.n_time_features)
        return (p.backbone_in_chans, p.image_size, p.width)

    def embedding_shape(self, **params: Any) -> tuple[int, int, int]:
        """The C x H x W image UniRepLKNet sees: what the embedding makes of ``decode``'s output, or that output."""
        p = self.resolve_params(**params)
        if not p.is_embedding:
            return self.output_shape(**params)
        if p.embedding_layout == "time_axis":
            return (1, p.d_model, p.seq_len)
        return (1, *embedding_map_size(p.seq_len, p.d_model))

    def front_end(self, **params: Any) -> nn.Module:
        """The model's first stage for these params: the learned embedding, or identity for weight-free maps."""
        p = self.resolve_params(**params)
        if not p.is_embedding:
            return nn.Identity()
        return TimeSeriesEmbedding(p.num_vars, p.d_model, p.seq_len, p.n_time_features, layout=p.embedding_layout)

    def _decode(self, data: bytes, p: TimeSeriesParams) -> torch.Tensor:
        values, stamps = self.parse(data)
        return self.encode(values, stamps, p)

    def decode_array(self, values: np.ndarray, stamps: list[datetime] | None = None, **params: Any) -> torch.Tensor:
        """``decode`` for a series already in memory (``(T, V)``), e.g. read from a ``.ts`` file for training."""
        return self.encode(_as_series(values), stamps, self.resolve_params(**params)).to(torch.float32).contiguous()

    def encode(self, values: np.ndarray, stamps: list[datetime] | None, p: TimeSeriesParams) -> torch.Tensor:
        """Check a T x V series against the limits and the model, fit its length, normalize, and map it."""
        normed = self._fit(values, p)
        if not p.is_embedding:
            return self._render(normed, p)
        if stamps is None:
            marks = np.zeros((p.length, p.n_time_features))
        else:
            cut_stamps = stamps[-p.seq_len :] if p.length_mode == "window" else stamps
            picked = [cut_stamps[round(i)] for i in np.linspace(0, len(cut_stamps) - 1, p.length)]
            marks = time_features(picked, p.freq)
        packed = np.concatenate([normed, marks], axis=1).astype(np.float32)
        return torch.from_numpy(packed).unsqueeze(0)

    def parse(self, data: bytes) -> tuple[np.ndarray, list[datetime] | None]:
        """T x V float64 values and, when present, T timestamps."""
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise UnsupportedMediaTypeError("series must be UTF-8 text: CSV or JSON") from exc
        if "\x00" in text:
            raise UnsupportedMediaTypeError("series must be text (CSV or JSON); found binary data")
        stripped = text.lstrip()
        if not stripped:
            raise UndecodableInputError("the series payload is blank")
        if stripped[0] in "[{":
            return self._parse_json(stripped)
        return self._parse_csv(text)

    def _check_rows(self, n: int) -> None:
        if n > self.limits.max_series_length:
            raise InputTooLargeError(f"series has {n} rows; the limit is {self.limits.max_series_length}", steps=n)

    def _parse_json(self, text: str) -> tuple[np.ndarray, list[datetime] | None]:
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise UndecodableInputError(f"series JSON is invalid: {exc}") from exc
        raw_stamps: Any = None
        if isinstance(obj, dict):
            raw_stamps = obj.get("timestamps")
            obj = obj.get("values", obj.get("data"))
        if not isinstance(obj, list) or not obj:
            raise UndecodableInputError(
                'series JSON must be a non-empty array or {"values": [...], "timestamps": [...]}'
            )
        self._check_rows(len(obj))
        rows = [row if isinstance(row, list) else [row] for row in obj]
        widths = {len(row) for row in rows}
        if len(widths) != 1 or 0 in widths:
            raise UndecodableInputError(
                f"series JSON rows must all have the same, non-zero length; got {sorted(widths)}"
            )
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise UndecodableInputError(f"series value at row {i}, column {j} is {value!r}, not a number")
        values = np.asarray(rows, dtype=np.float64)
        stamps = None
        if raw_stamps is not None:
            if not isinstance(raw_stamps, list) or len(raw_stamps) != len(rows):
                raise UndecodableInputError(f"timestamps must be an array with one entry per row ({len(rows)})")
            stamps = [parse_stamp(s, f"timestamp {i}") for i, s in enumerate(raw_stamps)]
        return values, stamps

    def _parse_csv(self, text: str) -> tuple[np.ndarray, list[datetime] | None]:
        self._check_rows(text.count("\n") - 1)
        first = text.lstrip().split("\n", 1)[0]
        delimiter = max((",", ";", "\t"), key=first.count) if any(d in first for d in ",;\t") else ","
        try:
            rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if any(c.strip() for c in r)]
        except csv.Error as exc:
            raise UndecodableInputError(f"series CSV is malformed: {exc}") from exc
        if not rows:
            raise UndecodableInputError("series CSV has no rows")
        width = len(rows[0])
        header: list[str] | None = None
        if not all(is_number(c) or maybe_stamp(c) for c in rows[0]):
            header, rows = [c.strip() for c in rows[0]], rows[1:]
        if not rows:
            raise UndecodableInputError("series CSV has a header but no data rows")
        for i, row in enumerate(rows):
            if len(row) != width:
                raise UndecodableInputError(
                    f"CSV line {i + 1 + (header is not None)} has {len(row)} fields; expected {width}"
                )
        stamp_col = find_stamp_column(rows[0], header)
        names = header or [str(j) for j in range(width)]
        value_cols = [j for j in range(width) if j != stamp_col]
        if not value_cols:
            raise UndecodableInputError("series CSV has no value columns besides the timestamp")
        try:
            # numpy parses the strings in C; only a failure pays for the Python loop that finds the bad cell.
            values = np.asarray([[row[j] for j in value_cols] for row in rows]).astype(np.float64)
        except ValueError:
            for i, row in enumerate(rows):
                for j in value_cols:
                    if not is_number(row[j]):
                        line = i + 1 + (header is not None)
                        raise UndecodableInputError(
                            f"CSV line {line}, column {names[j]!r}: {row[j][:40]!r} is not a number"
                        ) from None
            raise
        stamps = None
        if stamp_col is not None:
            stamps = [parse_stamp(row[stamp_col], f"CSV timestamp on line {i + 1}") for i, row in enumerate(rows)]
        return values, stamps

    def preview(self, tensor: torch.Tensor, **params: Any) -> bytes:
        """Any 1 x H x W map (the packed window, or the embedding image a model made of it) as a grey image."""
        chw = as_chw(tensor, "timeseries")
        return encode_png(gray_to_uint8(chw[0]), min_side=192)

    def _fit(self, values: np.ndarray, p: TimeSeriesParams) -> np.ndarray:
        """The checked series, cut or resampled to the model's length (or, padding, kept when no longer than it) and
        normalized per variable (float64)."""
        t, v = values.shape
        if t > self.limits.max_series_length:
            raise InputTooLargeError(
                f"series has {t} time steps; the limit is {self.limits.max_series_length}", steps=t
            )
        if v > self.limits.max_series_variables:
            raise InputTooLargeError(
                f"series has {v} variables; the limit is {self.limits.max_series_variables}", variables=v
            )
        if p.num_vars and v != p.num_vars:
            raise UndecodableInputError(
                f"series has {v} variable(s); this model expects {p.num_vars} (and {_length_rule(p)})", variables=v
            )
        if t < 2 or (p.length_mode == "window" and t < p.seq_len):
            raise UndecodableInputError(f"series has {t} time step(s); this model needs {_length_rule(p)}", steps=t)
        check_finite(values, "series")
        cut = values[-p.seq_len :] if p.length_mode == "window" else values
        keep = p.length_mode == "pad" and t <= p.length  # padded at rendering, after normalizing the real steps
        window = cut if keep else (paa if p.length_mode == "paa" else resample)(cut, p.length)
        if p.normalize == "dataset":
            mean, std = np.asarray(p.data_mean)[None, :], np.asarray(p.data_std)[None, :]
        else:
            mean = window.mean(axis=0, keepdims=True)
            std = np.sqrt(window.var(axis=0, keepdims=True) + REVIN_EPS)
        normed: np.ndarray = (window - mean) / std
        return normed

    # Training hooks. For weight-free maps the cache holds the fitted, normalized series (1 x steps x V, float64)
    # rather than the maps, so that augmentation perturbs the series and the maps are drawn from the result.

    def _render(self, normed: np.ndarray, p: TimeSeriesParams) -> torch.Tensor:
        if normed.shape[0] < p.length:
            normed = pad(normed, p.length)
        return torch.from_numpy(render(normed, p.kinds, pool_variables=p.num_vars == 0, rows=p.image_size))

    def decode_for_training(self, data: bytes, **params: Any) -> torch.Tensor:
        p = self.resolve_params(**params)
        if p.is_embedding:
            return self.decode(data, **params)
        data = bytes(data)
        check_size(data, self.limits.max_bytes, self.name)
        values, _ = self.parse(data)
        return self.training_array(values, **params)

    def training_array(self, values: np.ndarray, **params: Any) -> torch.Tensor:
        """``decode_for_training`` for a series already in memory (``(T, V)``): what ``augment`` and
        ``training_input`` take."""
        p = self.resolve_params(**params)
        if p.is_embedding:
            return self.decode_array(values, **params)
        return torch.from_numpy(self._fit(_as_series(values), p)).unsqueeze(0)

    def training_input(self, cached: torch.Tensor, **params: Any) -> torch.Tensor:
        p = self.resolve_params(**params)
        if p.is_embedding:
            return cached
        return self._render(cached[0].to(torch.float64).numpy(), p).contiguous()

    def augment(self, cached: torch.Tensor, generator: torch.Generator, **params: Any) -> torch.Tensor:
        """Training only: window crop stretched back, per-variable scaling and jitter of the series columns."""
        p = self.resolve_params(**params)
        if p.is_embedding:
            return augment_series(cached, p.num_vars, generator)
        series = augment_series(cached.to(torch.float32).clone(), cached.shape[-1], generator)
        return self._render(series[0].to(torch.float64).numpy(), p).contiguous()


def _as_series(values: np.ndarray) -> np.ndarray:
    """A T x V float64 array (a 1-D series is one variable), or ``UndecodableInputError``."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or 0 in values.shape:
        raise UndecodableInputError(f"a series must be a non-empty T x V array, got shape {values.shape}")
    return values


def _length_rule(p: TimeSeriesParams) -> str:
    if p.length_mode == "window":
        return f"at least {p.seq_len} time steps (it reads the last {p.seq_len})"
    if p.length_mode == "pad":
        return f"at least 2 time steps (padded to {p.length}, or resampled down to it)"
    if p.length_mode == "paa":
        return f"at least 2 time steps (averaged down to {p.length} spans, or resampled up to it)"
    return f"at least 2 time steps (resampled to {p.length})"
