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


def trained_score(
    params: dict[str, Any],
    fit: Sequence[tuple[np.ndarray, str]],
    held: Sequence[tuple[np.ndarray, str]],
    cfg: TrainConfig,
    variant: str,
    steps: int,
) -> tuple[int, int, float]:
    """(series right, series scored, summed loss) on ``held`` of the run's network trained ``steps`` steps on
    ``fit`` with the run's recipe."""
    from training.recipe import make_optimizer, make_scheduler, soft_cross_entropy, soft_targets

    made = _trial_network(params, fit, held, cfg, variant)
    if made is None:
        return 0, len(held), float("inf")
    net, labels, (x_fit, y_fit), (x_held, y_held) = made
    optimizer = make_optimizer(net, cfg.lr, cfg.weight_decay)
    scheduler = make_scheduler(optimizer, steps, max(1, steps // 10))
    order = torch.Generator().manual_seed(cfg.seed)
    batch = min(cfg.batch_size, len(x_fit))
    net.train()
    for _ in range(steps):
        idx = torch.randperm(len(x_fit), generator=order)[:batch].to(x_fit.device)
        loss = soft_cross_entropy(net(x_fit[idx]), soft_targets(y_fit[idx], len(labels), cfg.label_smoothing))
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
    """As ``trained_score``, with the untrained network's head solved by ridge regression on ``fit``
    (``steps`` unused)."""
    from training.ridge_head import fit_ridge_head, pooled_features

    made = _trial_network(params, fit, held, cfg, variant)
    if made is None:
        return 0, len(held), float("inf")
    net, labels, (x_fit, y_fit), (x_held, y_held) = made
    fit_ridge_head(net, pooled_features(net, x_fit), y_fit.tolist(), len(labels))
    return _held_out_score(net, x_held, y_held)


def _trial_network(
    params: dict[str, Any],
    fit: Sequence[tuple[np.ndarray, str]],
    held: Sequence[tuple[np.ndarray, str]],
    cfg: TrainConfig,
    variant: str,
) -> tuple[torch.nn.Module, list[str], tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None:
    """The run's network as its seed initializes it, its labels, and the fit and held maps; None when either part
    has no series the decoder takes."""
    from training.distributed import pick_device
    from training.modeling import build_model

    labels = sorted({label for _, label in fit})
    index = {label: i for i, label in enumerate(labels)}
    device = pick_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    x_fit, y_fit = (t.to(device) for t in _encode(fit, params, index))
    x_held, y_held = (t.to(device) for t in _encode(held, params, index))
    if not len(x_fit) or not len(x_held):
        return None
    torch.manual_seed(cfg.seed)
    net = build_model("timeseries", variant, x_fit.shape[1], len(labels), params).to(device)
    return net, labels, (x_fit, y_fit), (x_held, y_held)


def _held_out_score(net: torch.nn.Module, x_held: torch.Tensor, y_held: torch.Tensor) -> tuple[int, int, float]:
    net.eval()
    with torch.no_grad():
        logits = torch.cat([net(x_held[i : i + 64]) for i in range(0, len(x_held), 64)]).float()
    right = int((logits.argmax(-1) == y_held).sum())
    return right, len(y_held), float(torch.nn.functional.cross_entropy(logits, y_held, reduction="sum"))


def _encode(
    pairs: Sequence[tuple[np.ndarray, str]], params: dict[str, Any], index: dict[str, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The served maps of the series the model would take (the decoder refuses the others in training too)."""
    from modality_adapters import TimeSeriesAdapter

    adapter = TimeSeriesAdapter()
    maps, targets = [], []
    for values, label in pairs:
        if label not in index:
            continue
        try:
            maps.append(adapter.decode_array(values, **params))
        except (UndecodableInputError, InputTooLargeError):  # a series the decoder refuses; bad params raise
            continue
        targets.append(index[label])
    if not maps:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long)
    return torch.stack(maps), torch.tensor(targets)
