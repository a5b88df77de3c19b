"""A moving average of the weights (``--ema DECAY``): the network validated, selected and saved is the average of
the recent steps' networks rather than the last step's.

Trained from scratch on a few dozen examples, the network's accuracy moves by several points from one epoch to the
next: each step follows one small, augmented batch. An exponential moving average of the weights is the cheap
ensemble of those neighbouring networks (the official UniRepLKNet fine-tuning keeps one; timm's ``ModelEmaV3`` is the
same idea). Unlike timm's, this average is bias-corrected, as Adam corrects its moments: after t steps each step i
weighs ``decay^(t-i)`` and the weights are normalised, so the random initialisation never leaks into the average and
no warm-up rule is needed on runs of a few hundred steps.

BatchNorm's running statistics are averaged like the weights (they belong to the networks being averaged); integer
buffers (the batch counters) are copied. Written here rather than taken from ``torch.optim.swa_utils.AveragedModel``:
that one keeps a second module and re-estimates BatchNorm with a pass over the data, while this one keeps a state
dict that swaps into the network for validation and is what the checkpoint carries for ``--resume``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """The bias-corrected exponential moving average of a network's state over optimizer steps."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the average's decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.steps = 0
        self.state = {k: v.detach().clone() for k, v in net.state_dict().items()}

    def update(self, net: nn.Module) -> None:
        """Fold the network's current state in (call after each optimizer step)."""
        self.steps += 1
        # avg_t = avg_{t-1} + (x_t - avg_{t-1}) * (1 - d) / (1 - d^t): at t = 1 the average is x_1 itself.
        rate = (1.0 - self.decay) / (1.0 - self.decay**self.steps)
        with torch.no_grad():
            for name, value in net.state_dict().items():
                kept = self.state[name]
                if kept.is_floating_point():
                    kept.lerp_(value.detach().to(kept.dtype), rate)
                else:
                    kept.copy_(value)

    def copy_to(self, net: nn.Module) -> None:
        """Load the average into the network (what the model file will hold)."""
        net.load_state_dict(self.state)

    @contextlib.contextmanager
    def swapped_in(self, net: nn.Module) -> Iterator[None]:
        """The network holds the average inside the block and its own training state again after it."""
        own = {k: v.detach().clone() for k, v in net.state_dict().items()}
        self.copy_to(net)
        try:
            yield
        finally:
            net.load_state_dict(own)

    def to_checkpoint(self) -> dict[str, Any]:
        return {"decay": self.decay, "steps": self.steps, "state": self.state}

    def load_checkpoint(self, saved: dict[str, Any]) -> None:
        self.decay, self.steps = float(saved["decay"]), int(saved["steps"])
        self.state = {k: v.to(self.state[k].device) for k, v in saved["state"].items()}


def averaged(average: WeightAverage | None, net: nn.Module) -> contextlib.AbstractContextManager[None]:
    """The average swapped into ``net`` when there is one, else nothing happens."""
    return average.swapped_in(net) if average is not None else contextlib.nullcontext()
