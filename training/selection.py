"""Which epoch's network becomes the model file: the best on validation (``--select best``, the default) or the last.

Small sets overfit, and validation accuracy can peak before the last epoch; keeping the last epoch whatever the
validation said throws the better model away. The best network is kept as a CPU copy of its state (ranked by
validation accuracy, ties by lower validation loss) and travels in ``checkpoint.pt`` so ``--resume`` keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class BestEpoch:
    epoch: int
    val_acc: float
    val_loss: float
    state: dict[str, torch.Tensor]

    def beats(self, val_acc: float, val_loss: float) -> bool:
        """Whether this epoch ranks above one with the given figures."""
        return (self.val_acc, -self.val_loss) > (val_acc, -val_loss)

    def to_checkpoint(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "val_acc": self.val_acc, "val_loss": self.val_loss, "model": self.state}

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any] | None) -> BestEpoch | None:
        if not saved:
            return None
        return cls(int(saved["epoch"]), float(saved["val_acc"]), float(saved["val_loss"]), dict(saved["model"]))


def remember_if_best(best: BestEpoch | None, net: nn.Module, entry: dict[str, Any]) -> BestEpoch | None:
    """The new best after the epoch ``entry`` (with ``val_acc`` and ``val_loss``), copying the state if it won."""
    candidate = BestEpoch(int(entry["epoch"]), float(entry["val_acc"]), float(entry["val_loss"]), {})
    if best is not None and not candidate.beats(best.val_acc, best.val_loss):
        return best
    candidate.state = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
    return candidate


def apply_selection(select: str, best: BestEpoch | None, net: nn.Module, epochs_run: int) -> dict[str, Any]:
    """Load the selected epoch's weights into ``net`` and describe the choice (for metrics.json and the file)."""
    if select == "best" and best is not None and best.epoch != epochs_run:
        net.load_state_dict(best.state)
        return {"select": select, "epoch": best.epoch, "of": epochs_run, "val_acc": best.val_acc}
    return {"select": select, "epoch": epochs_run, "of": epochs_run}
