"""The map search's trials: one candidate map scored on one holdout, by training the run's network briefly or by
solving its head in closed form (the ridge head), on the served maps of the series.

Kept apart from the search's decisions (``series_params``): these build networks and run them; those only count.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from training.config import TrainConfig
from unirep_errors import InputTooLargeError, UndecodableInputError

Trial = tuple[torch.nn.Module, list[str], tuple[list[torch.Tensor], torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""A trial's network, labels, (fit series as cached, targets) and (held maps, targets)."""


def trained_score(
    params: dict[str, Any],
    fit: Sequence[tuple[np.ndarray, str]],
    held: Sequence[tuple[np.ndarray, str]],
    cfg: TrainConfig,
    variant: str,
    steps: int,
) -> tuple[int, int, float]:
    """(series right, series scored, summed loss) on ``held`` of the run's network trained ``steps`` steps on
    ``fit`` as the run trains it: the recipe's optimizer and schedule, and each batch drawn through the adapter's
    training augmentation when the run augments (a map's trial without it ranked the maps unlike whole runs)."""
    from modality_adapters import TimeSeriesAdapter
    from training.recipe import make_optimizer, make_scheduler, soft_cross_entropy, soft_targets, training_batch

    made = _trial_network(params, fit, held, cfg, variant)
    if made is None:
        return 0, len(held), float("inf")
    net, labels, (cached, y_fit), (x_held, y_held) = made
    adapter, device = TimeSeriesAdapter(), x_held.device
    optimizer = make_optimizer(net, cfg.lr, cfg.weight_decay)
    scheduler = make_scheduler(optimizer, steps, max(1, steps // 10))
    order = torch.Generator().manual_seed(cfg.seed)
    batch = min(cfg.batch_size, len(cached))
    net.train()
    for _ in range(steps):
        idx = torch.randperm(len(cached), generator=order)[:batch]
        x = training_batch(adapter, [cached[i] for i in idx.tolist()], cfg.augment, order, params)
        logits = net(x.to(device))
        loss = soft_cross_entropy(logits, soft_targets(y_fit[idx].to(device), len(labels), cfg.label_smoothing))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return _held_out_score(net, x_held, y_held)


def ridge_score(
    params: dict[str, Any],
    fit: Sequence[tuple[np.ndarray, str]],
    held: Sequence[tuple[np.ndarray, str]],
    cfg: TrainConfig,
    variant: str,
    steps: int,
) -> tuple[int, int, float]:
    """As ``trained_score``, with the untrained network's head solved by ridge regression on ``fit``'s maps
    (``steps`` unused)."""
    from modality_adapters import TimeSeriesAdapter
    from training.ridge_head import fit_ridge_head, pooled_features

    made = _trial_network(params, fit, held, cfg, variant)
    if made is None:
        return 0, len(held), float("inf")
    net, labels, (cached, y_fit), (x_held, y_held) = made
    adapter = TimeSeriesAdapter()
    features = pooled_features(net, cached, lambda t: adapter.training_input(t, **params))
    fit_ridge_head(net, features, y_fit.tolist(), len(labels))
    return _held_out_score(net, x_held, y_held)


def _trial_network(
    params: dict[str, Any],
    fit: Sequence[tuple[np.ndarray, str]],
    held: Sequence[tuple[np.ndarray, str]],
    cfg: TrainConfig,
    variant: str,
) -> Trial | None:
    """The run's network as its seed initializes it, its labels, the fit series as the training cache holds them
    (the adapter's ``training_array``) and the held maps; None when either part has no series the decoder takes."""
    from training.distributed import pick_device
    from training.modeling import build_model

    labels = sorted({label for _, label in fit})
    index = {label: i for i, label in enumerate(labels)}
    device = pick_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    cached, y_fit = _encode(fit, params, index, for_training=True)
    held_maps, y_held = _encode(held, params, index)
    if not cached or not held_maps:
        return None
    torch.manual_seed(cfg.seed)
    net = build_model("timeseries", variant, held_maps[0].shape[0], len(labels), params).to(device)
    return net, labels, (cached, y_fit), (torch.stack(held_maps).to(device), y_held.to(device))


def _held_out_score(net: torch.nn.Module, x_held: torch.Tensor, y_held: torch.Tensor) -> tuple[int, int, float]:
    net.eval()
    with torch.no_grad():
        logits = torch.cat([net(x_held[i : i + 64]) for i in range(0, len(x_held), 64)]).float()
    right = int((logits.argmax(-1) == y_held).sum())
    return right, len(y_held), float(torch.nn.functional.cross_entropy(logits, y_held, reduction="sum"))


def _encode(
    pairs: Sequence[tuple[np.ndarray, str]], params: dict[str, Any], index: dict[str, int], for_training: bool = False
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The served maps of the series the model would take (the decoder refuses the others in training too), or with
    ``for_training`` the same series as the training cache holds them, to be augmented and mapped per step."""
    from modality_adapters import TimeSeriesAdapter

    adapter = TimeSeriesAdapter()
    encode = adapter.training_array if for_training else adapter.decode_array
    out, targets = [], []
    for values, label in pairs:
        if label not in index:
            continue
        try:
            out.append(encode(values, **params))
        except (UndecodableInputError, InputTooLargeError):  # a series the decoder refuses; bad params raise
            continue
        targets.append(index[label])
    return out, torch.tensor(targets, dtype=torch.long)
