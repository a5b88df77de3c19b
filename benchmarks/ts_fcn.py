"""A 1-D fully convolutional network trained from scratch on the raw series: how far a small convolutional network
that is not UniRepLKNet gets on the same split, for scale beside MiniRocket (``ts_dev_split.py --fcn``).

The network is the FCN of Wang, Yan and Oates (2017), the usual deep baseline of the UCR archive: three
convolutions along time (128 channels of width 8, 256 of width 5, 128 of width 3), each followed by batch norm and
a ReLU, at the series' full resolution, then the global average over time and a linear layer. Trained with Adam
(lr 1e-3), batch 16, on each series z-normalized per variable and brought to the longest training length (as
``ts_baselines`` brings them for MiniRocket); the learning rate decays along a cosine to zero over the epochs so
that the last epoch's model is a settled one (the paper keeps a constant rate over 2000 epochs and picks by
training loss). No augmentation, no selection on the held-out series: the last epoch is scored once.

``map_fcn`` trains the same network on the time-series adapter's map instead of the raw series: each column of the
``C x H x W`` map (a step, or a span of steps) becomes one step of a ``C * H``-variable series, so the network
convolves along time and reads every row at once. It asks whether a map carries the signal at all, apart from how
well UniRepLKNet reads it: where the FCN on the map comes near the FCN on the raw series and UniRepLKNet does not,
the map is not what is missing. Only maps with time across the columns (the value image, line plot, scalogram)
read this way; a Gramian field's columns are not steps.

Written here rather than taken from a library: aeon's ``FCNClassifier`` needs TensorFlow, which nothing else in
this project installs; the network is a dozen lines of torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.ts_baselines import znorm
from benchmarks.ucr import Split, common_length, encode_all, equal_length
from modality_adapters.timeseries import TimeSeriesAdapter
from modality_adapters.timeseries_maps import ROWED_KINDS
from modality_adapters.timeseries_params import fit_params

WIDTHS = ((128, 8), (256, 5), (128, 3))
"""(channels, kernel width) of the three convolutions, as in the paper."""


def fcn_network(variables: int, classes: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = variables
    for out, width in WIDTHS:
        same = nn.ConstantPad1d(((width - 1) // 2, width // 2), 0.0)  # as padding="same", without its copy warning
        layers += [same, nn.Conv1d(channels, out, width), nn.BatchNorm1d(out), nn.ReLU()]
        channels = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(channels, classes))


def _series(split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and test series as ``(N, V, length)``, z-normalized and brought to the longest training length."""
    length = common_length(split)
    train = torch.tensor(equal_length(znorm(split.train_x), length), dtype=torch.float32)
    test = torch.tensor(equal_length(znorm(split.test_x), length), dtype=torch.float32)
    return train, test


def fcn(split: Split, epochs: int = 100, seed: int = 0, batch_size: int = 16) -> float:
    """Test accuracy of the FCN trained on ``split``'s training series for ``epochs`` (seeded: the same figure
    each run on one machine)."""
    return _fit_and_score(split, *_series(split), epochs, seed, batch_size)


def map_fcn(split: Split, params: dict[str, Any], epochs: int = 100, seed: int = 0, batch_size: int = 16) -> float:
    """Test accuracy of the FCN trained along the columns of the adapter's map with ``params`` (fitted to the
    training series as ``unirep train`` fits them: length, variables, the data's scale)."""
    fitted = fit_params([np.asarray(x, dtype=np.float64) for x in split.train_x], **params)
    kinds = TimeSeriesAdapter().resolve_params(**fitted).kinds
    if not set(kinds) <= set(ROWED_KINDS):
        raise ValueError(f"the map FCN reads maps with time across the columns {sorted(ROWED_KINDS)}, got {kinds}")
    # (N, C, H, W) -> (N, C * H, W): every row of every channel one variable of a series along the columns
    train, test = (encode_all(xs, fitted).flatten(1, 2) for xs in (split.train_x, split.test_x))
    return _fit_and_score(split, train, test, epochs, seed, batch_size)


def _fit_and_score(
    split: Split, train_x: torch.Tensor, test_x: torch.Tensor, epochs: int, seed: int, batch_size: int
) -> float:
    """Train the FCN on ``(N, V, T)`` inputs of ``split``'s training series with the recipe above and score its last
    epoch on the inputs of its test series (``Split``'s ``*_y`` index its labels)."""
    train_y = torch.as_tensor(split.train_y, dtype=torch.long)
    test_y = torch.as_tensor(split.test_y, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = fcn_network(train_x.shape[1], len(split.labels))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    steps_per_epoch = math.ceil(len(train_x) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            if len(batch) < 2:  # batch norm needs two series; the odd one is seen in the next epoch's order
                continue
            loss = nn.functional.cross_entropy(net(train_x[batch]), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    net.eval()
    with torch.no_grad():
        return float((net(test_x).argmax(1) == test_y).float().mean())
