"""What a run will do, said before its first step: examples, steps, map size and an estimated duration.

A CPU run of the default recipe can take an hour; the user should know that before it starts, not after. The
duration is measured, not guessed: two training steps (forward, backward) on a copy of the network and a real
batch (the first warms up, the second is timed), times the steps to go, plus validation at a third of a step per
batch. The progress bar then follows the whole run (not one epoch) so its remaining time updates as it goes.
"""

from __future__ import annotations

import copy
import sys
import time

import torch
from tqdm import tqdm

from training.loop import Run, autocast, batches, to_device
from training.recipe import training_batch


def seconds_per_step(run: Run) -> float:
    """Wall seconds of one training step, measured on a copy (the run's own network and optimizer are untouched)."""
    adapter, params = run.adapter, run.data.params
    cached = [
        run.data.train.tensors[i] for i in next(iter(batches(range(len(run.data.train.tensors)), run.cfg.batch_size)))
    ]
    generator = torch.Generator().manual_seed(0)
    probe = copy.deepcopy(run.net)
    probe.train(not run.cfg.freeze_backbone)
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        x = training_batch(adapter, cached, run.cfg.augment, generator, params)  # augmenting is part of a step's cost
        with autocast(run.d.device, run.amp):
            logits = probe(to_device(x, run.d.device, run.channels_last))
        logits.float().logsumexp(-1).mean().backward()
        if run.d.device.type == "cuda":
            torch.cuda.synchronize(run.d.device)
        timings.append(time.perf_counter() - started)
    del probe
    return timings[-1]


def describe(run: Run, step_seconds: float) -> str:
    """The one line said before training starts."""
    cfg, data = run.cfg, run.data
    epochs_left = cfg.epochs - run.start_epoch
    steps_left = epochs_left * run.steps_per_epoch
    val_batches = -(-len(data.val.tensors) // cfg.batch_size)
    validations = 2 if run.average is not None else 1  # the average and the last step's network
    estimate = steps_left * step_seconds + epochs_left * validations * val_batches * step_seconds / 3
    shape = "x".join(str(v) for v in run.adapter.output_shape(**data.params))
    resumed = f" (resuming after epoch {run.start_epoch})" if run.start_epoch else ""
    averaged = f", weights averaged with decay {cfg.ema}" if run.average is not None else ""
    refit = ", then its head solved by ridge regression" if data.head == "train+ridge" else ""
    return (
        f"training {run.variant} on {run.d.device.type}: {len(data.train.tensors)} examples, "
        f"{len(data.labels)} classes, {len(data.val.tensors)} for validation; {steps_left} steps "
        f"({epochs_left} epochs x {run.steps_per_epoch}, batch {_batch(run)}){resumed}; map {shape}; "
        f"about {format_duration(estimate)} ({step_seconds:.2f} s/step measured; recipe {cfg.recipe}, "
        f"keeps the {cfg.select} epoch{averaged}{refit})"
    )


def _batch(run: Run) -> str:
    """The global batch, and how the processes share it."""
    world, share = run.d.world, run.cfg.batch_size
    return f"{share * world} in {world} processes of {share}" if world > 1 else str(share)


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def announce(run: Run) -> None:
    """Measure, say the plan on stderr (rank 0), record the estimate in the run's notes, open the run's bar."""
    if not run.d.is_main or run.start_epoch >= run.cfg.epochs:
        return
    if run.data.head == "ridge":
        data, shape = run.data, "x".join(str(v) for v in run.adapter.output_shape(**run.data.params))
        line = (
            f"fitting the head of {run.variant} on {run.d.device.type}: {len(data.train.tensors)} examples, "
            f"{len(data.labels)} classes, {len(data.val.tensors)} for validation; ridge regression on the features "
            f"of the {'--init' if run.cfg.init else 'untrained'} backbone, no training steps; map {shape}"
        )
        run.notes.append(line)
        print(line, file=sys.stderr, flush=True)
        return
    step_seconds = seconds_per_step(run)
    line = describe(run, step_seconds)
    run.notes.append(line)
    print(line, file=sys.stderr, flush=True)
    if run.cfg.progress:
        total = run.cfg.epochs * run.steps_per_epoch
        done = run.start_epoch * run.steps_per_epoch
        run.bar = tqdm(total=total, initial=done, desc="training", unit="step", file=sys.stderr, dynamic_ncols=True)
