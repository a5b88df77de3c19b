"""The run's checkpoint (``checkpoint.pt``): the train form with optimizer, schedule, best epoch and weight average,
written atomically after every epoch, so that ``--resume`` continues exactly where a run stopped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from models.checkpoint import load_torch_file
from training.selection import BestEpoch
from unirep_errors import CheckpointError

if TYPE_CHECKING:
    from training.loop import Run

CHECKPOINT_NAME = "checkpoint.pt"


def checkpoint_path(resume: str | Path) -> Path:
    path = Path(resume)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def save_checkpoint(run: Run, epochs_done: int) -> None:
    """The train form with optimizer and schedule state, written atomically, for ``--resume``."""
    out = Path(run.cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state = {
        "model": run.net.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "epoch": epochs_done,
        "history": run.history,
        "best": run.best.to_checkpoint() if run.best is not None else None,
        "average": run.average.to_checkpoint() if run.average is not None else None,
        "modality": run.cfg.modality,
        "variant": run.variant,
        "labels": run.data.labels,
        "params": run.data.params,
        "config": run.cfg.to_dict(),
    }
    tmp = out / f".{CHECKPOINT_NAME}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, out / CHECKPOINT_NAME)


def load_resume(run: Run) -> None:
    path = checkpoint_path(run.cfg.resume or "")
    state = load_torch_file(path, context="--resume: ")
    for key, ours in (("modality", run.cfg.modality), ("variant", run.variant), ("labels", run.data.labels)):
        if state.get(key) != ours:
            raise CheckpointError(f"--resume: {path} was trained with {key} {state.get(key)!r}, this run has {ours!r}")
    run.net.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.start_epoch = int(state["epoch"])
    run.history = list(state["history"])
    run.best = BestEpoch.from_checkpoint(state.get("best"))
    if run.average is not None and state.get("average"):
        run.average.load_checkpoint(state["average"])
    run.notes.append(f"resumed from {path} after epoch {run.start_epoch}")
