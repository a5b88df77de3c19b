"""The optimization recipe of the official code: AdamW without decay on norms/biases/scales, linear warmup then
cosine decay per step, label-smoothed soft targets, and (audio) mixup of example pairs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from modality_adapters.base import BaseAdapter


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Decay on weight matrices and kernels only; 1-D parameters (biases, norms, layer scale, GRN) are not decayed."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.999))


def make_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_ratio: float = 1e-3
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step multiplier: linear warmup from ~0 to 1, then cosine down to ``min_ratio``."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def passes_per_epoch(steps_per_pass: int, epochs: int, min_steps: int) -> int:
    """How many shuffled passes over the data one epoch makes, so that the run takes at least ``min_steps``
    optimizer steps. A small data set at the usual batch size gives a handful of steps per pass, too few for a
    network trained from scratch to leave its initialization; repeating passes (each freshly shuffled and
    augmented) gives it the steps while the schedule, checkpoints and validation stay per epoch."""
    total = max(1, steps_per_pass) * max(1, epochs)
    return max(1, math.ceil(min_steps / total))


def soft_targets(targets: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """One-hot rows with ``smoothing`` spread uniformly over all classes (as ``label_smoothing`` does)."""
    hot = F.one_hot(targets, num_classes).to(torch.float32)
    return hot * (1.0 - smoothing) + smoothing / num_classes


def mixup(
    inputs: torch.Tensor, targets: torch.Tensor, probability: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """With ``probability``, mix the batch with a shuffled copy of itself, lambda ~ Beta(10, 10) (the AST /
    speech-commands recipe); targets are soft rows and mix the same way."""
    if probability <= 0 or inputs.shape[0] < 2 or float(torch.rand((), generator=generator)) >= probability:
        return inputs, targets
    lam = _beta_sample(generator)
    order = torch.randperm(inputs.shape[0], generator=generator).to(inputs.device)
    return lam * inputs + (1 - lam) * inputs[order], lam * targets + (1 - lam) * targets[order]


def _beta_sample(generator: torch.Generator, concentration: float = 10.0) -> float:
    """Beta(c, c) from two seeded Gamma draws (``torch.distributions`` cannot take a generator)."""
    draws = torch._standard_gamma(torch.full((2,), concentration), generator=generator)
    return float(draws[0] / draws.sum())


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -(targets * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()


def training_batch(
    adapter: BaseAdapter[Any],
    cached: Sequence[torch.Tensor],
    augment: bool,
    generator: torch.Generator,
    params: dict[str, Any],
) -> torch.Tensor:
    """The network's input for a batch of cached examples: each drawn through the adapter's training augmentation,
    or mapped as served when the run does not augment (one place for the run, its plan and the map search's trials)."""
    if augment:
        return torch.stack([adapter.augment(t, generator, **params) for t in cached])
    return torch.stack([adapter.training_input(t, **params) for t in cached])
