"""The learned time-series embedding (Corrformer ``DataEmbedding``) that turns a window into a 1 x H x W image.

It has weights, so it belongs to the time-series model (embedding + UniRepLKNet, one checkpoint); it lives here
because it defines the other half of the adapter's tensor contract. Official configuration: 48 steps of 11
variables, ``d_model`` 768, value ``Conv1d(11, 768, 3, circular padding, no bias)`` plus a bias-free
``Linear(4, 768)`` on the hourly time features, summed, dropout 0.05, then ``(48, 768) -> (1, 192, 192)`` in
row-major order (48 * 768 = 192^2). The official geo embedding (station positions) is not an input a request
can carry, so it is left out. Parameter names follow the official module: ``value_embedding.tokenConv`` and
``temporal_embedding.embed``.

``layout="time_axis"`` keeps time as an image axis instead: ``(T, d) -> (1, d, T)``, embedding features down the
rows and time across the columns, so the backbone's convolutions slide along time (the row-major reshape folds
several time steps into one image row). ``TimeSeriesModel`` is the served composite: front end + UniRepLKNet.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "EMBEDDING_LAYOUTS",
    "TIME_FEATURES_PER_FREQ",
    "TimeSeriesEmbedding",
    "TimeSeriesModel",
    "embedding_map_size",
]

EMBEDDING_LAYOUTS = ("reshape", "time_axis")

TIME_FEATURES_PER_FREQ: dict[str, int] = {"s": 6, "t": 5, "h": 4, "d": 3}
"""Number of ``timeF`` features per frequency code (seconds, minutes, hours, days), as in the official code."""


def embedding_map_size(seq_len: int, d_model: int) -> tuple[int, int]:
    """(H, W) of the embedding image: the square when T * d is a perfect square, else the most square factor pair.

    The official reshape hard-codes 192 x 192; any H * W = T * d is a valid row-major reshape.
    """
    area = seq_len * d_model
    root = math.isqrt(area)
    for h in range(root, 0, -1):
        if area % h == 0:
            return h, area // h
    return 1, area  # pragma: no cover - h = 1 always divides


class TokenEmbedding(nn.Module):
    """Per-time-step value embedding: a width-3 Conv1d across time with circular padding, no bias."""

    def __init__(self, c_in: int, d_model: int) -> None:
        super().__init__()
        self.tokenConv = nn.Conv1d(c_in, d_model, kernel_size=3, padding=1, padding_mode="circular", bias=False)
        nn.init.kaiming_normal_(self.tokenConv.weight, mode="fan_in", nonlinearity="leaky_relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokenConv(x.permute(0, 2, 1)).transpose(1, 2)


class TimeFeatureEmbedding(nn.Module):
    """Linear map of the ``timeF`` calendar features to d_model, no bias."""

    def __init__(self, n_features: int, d_model: int) -> None:
        super().__init__()
        self.embed = nn.Linear(n_features, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)


class TimeSeriesEmbedding(nn.Module):
    """Consumes the time-series adapter's output and produces the image UniRepLKNet sees.

    Input: ``(B, 1, T, V + F)`` float32, as the adapter's ``decode`` returns it (stacked by the batcher): columns
    ``[:V]`` are the per-variable normalized values, ``[V:]`` the F time features. Output: ``(B, 1, H, W)`` with
    ``H * W = T * d_model``, the row-major reshape of the ``(B, T, d_model)`` embedding.
    """

    def __init__(
        self,
        num_vars: int = 11,
        d_model: int = 768,
        seq_len: int = 48,
        n_time_features: int = 4,
        height: int | None = None,
        width: int | None = None,
        dropout: float = 0.05,
        layout: str = "reshape",
    ) -> None:
        super().__init__()
        if layout not in EMBEDDING_LAYOUTS:
            raise ValueError(f"layout must be one of {EMBEDDING_LAYOUTS}, got {layout!r}")
        if layout == "time_axis":
            height, width = d_model, seq_len
        elif height is None or width is None:
            height, width = embedding_map_size(seq_len, d_model)
        if layout == "reshape" and height * width != seq_len * d_model:
            raise ValueError(f"height * width ({height} * {width}) must equal seq_len * d_model ({seq_len * d_model})")
        self.num_vars, self.d_model, self.seq_len = num_vars, d_model, seq_len
        self.n_time_features, self.height, self.width = n_time_features, height, width
        self.layout = layout
        self.value_embedding = TokenEmbedding(num_vars, d_model)
        self.temporal_embedding = TimeFeatureEmbedding(n_time_features, d_model)
        self.dropout = nn.Dropout(dropout)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, T, V + F)`` -> ``(B, T, d_model)``: value embedding + time embedding, then dropout."""
        expected = (1, self.seq_len, self.num_vars + self.n_time_features)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"TimeSeriesEmbedding expects (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        series = x[:, 0]
        values, marks = series[..., : self.num_vars], series[..., self.num_vars :]
        return self.dropout(self.value_embedding(values) + self.temporal_embedding(marks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embedded = self.embed(x)
        if self.layout == "time_axis":
            return embedded.transpose(1, 2).unsqueeze(1)
        return embedded.reshape(x.shape[0], 1, self.height, self.width)


class TimeSeriesModel(nn.Module):
    """Front end (the learned embedding, or ``nn.Identity`` for weight-free maps) + UniRepLKNet.

    Exposes the backbone's features/head split; the checkpoint holds ``embedding.*`` (when the front end has
    weights) beside ``backbone.*``.
    """

    def __init__(self, embedding: nn.Module, backbone: nn.Module) -> None:
        super().__init__()
        self.embedding = embedding
        self.backbone = backbone

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(self.embedding(x))  # type: ignore[operator]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head(features)  # type: ignore[operator]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
