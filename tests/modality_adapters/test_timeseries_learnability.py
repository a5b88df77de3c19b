"""Can a small UniRepLKNet learn, through a map, a class that lives only in how two variables move together?

Two variables, each a noisy sinusoid of random phase; in one class the second leads the first by a quarter
period, in the other it lags by as much. Each variable alone is distributed identically in both classes, and so
is the unordered pair of them: a map that averages per-variable pictures over the variables (the pooled Gramian
fields and recurrence plots, the served default before the value image) is blind to the class by construction.
The default map lays the variables side by side, where a convolution sees one band's waves run ahead of or
behind the other's. Deterministic: fixed data seeds, model seed and batch order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from modality_adapters import get_adapter
from models import UniRepLKNet

STEPS, BATCH, SIZE, PERIOD, LENGTH = 60, 16, 16, 8, 32


def lead_or_lag(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` series of ``LENGTH`` x 2: classes alternate, 0 = second variable lags, 1 = it leads."""
    rng = np.random.default_rng(seed)
    steps = 2 * np.pi * np.arange(LENGTH) / PERIOD
    series, labels = [], np.arange(n) % 2
    for label in labels:
        phase = rng.uniform(0, 2 * np.pi)
        shift = np.pi / 2 if label else -np.pi / 2
        pair = np.stack([np.sin(steps + phase), np.sin(steps + phase + shift)], axis=1)
        series.append(pair + 0.1 * rng.normal(size=pair.shape))
    return series, labels


Maker = Callable[[int, int], tuple[list[np.ndarray], np.ndarray]]
"""``(n, seed) -> (series, labels)``: a generated two-class data set."""


def held_out_accuracy(params: dict[str, Any], make: Maker = lead_or_lag) -> float:
    """Train a tiny UniRepLKNet for ``STEPS`` steps on the maps of 96 series from ``make``; accuracy on 64 others
    (fixed seeds throughout)."""
    adapter = get_adapter("timeseries")
    params = {"image_size": SIZE, **params}
    (train_x, train_y), (test_x, test_y) = make(96, 0), make(64, 1)
    inputs = torch.stack([adapter.decode_array(x, **params) for x in train_x])
    held_out = torch.stack([adapter.decode_array(x, **params) for x in test_x])
    torch.manual_seed(0)
    net = UniRepLKNet(
        in_chans=inputs.shape[1],
        num_classes=2,
        depths=(1, 1, 1, 1),
        dims=(16, 32, 48, 64),
        kernel_sizes=((3,), (7,), (7,), (7,)),
    )
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.05)
    order = torch.Generator().manual_seed(0)
    targets = torch.as_tensor(train_y)
    net.train()
    for _ in range(STEPS):
        idx = torch.randint(0, len(inputs), (BATCH,), generator=order)
        loss = nn.functional.cross_entropy(net(inputs[idx]), targets[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        return float((net(held_out).argmax(1).numpy() == test_y).mean())


def test_the_default_map_learns_how_variables_move_together() -> None:
    assert held_out_accuracy({}) >= 0.9  # the served default, which takes any number of variables


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"representation": "gasf+gadf+rp"}, id="per-variable maps averaged over variables"),
        pytest.param({"representation": "gasf+rp", "num_vars": 2}, id="each variable pictured against itself"),
    ],
)
def test_maps_without_the_relation_do_not(params: dict[str, Any]) -> None:
    assert held_out_accuracy(params) <= 0.7
