"""The training loop: build, (resume,) train epochs, validate, checkpoint; rank 0 writes the outputs at the end."""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from training import distributed as dist_utils
from training.averaging import WeightAverage, averaged
from training.checkpoint import load_resume, save_checkpoint
from training.config import DEFAULT_MODEL, TrainConfig, TrainResult
from training.distributed import Dist
from training.modeling import build_model, freeze_backbone, install_drop_path, load_init
from training.prepare import PreparedData, prepare
from training.recipe import (
    make_optimizer,
    make_scheduler,
    mixup,
    passes_per_epoch,
    soft_cross_entropy,
    soft_targets,
    training_batch,
)
from training.ridge_head import ridge_epoch
from training.selection import BestEpoch, remember_if_best
from unirep_errors import UnirepError


@dataclass
class Run:
    cfg: TrainConfig
    d: Dist
    variant: str
    data: PreparedData
    model: nn.Module
    """What the step calls: the network, or its DistributedDataParallel wrapper."""
    net: nn.Module
    """The network itself (what is validated, checkpointed and reparameterized)."""
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    steps_per_epoch: int
    passes: int
    """Shuffled passes over the training data per epoch (more than one when ``min_steps`` asks for it)."""
    amp: bool
    channels_last: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0
    notes: list[str] = field(default_factory=list)
    best: BestEpoch | None = None
    """The best validated epoch so far (kept for ``--select best``)."""
    average: WeightAverage | None = None
    """The moving average of the weights (``--ema``): validated, selected and saved in place of the last step's."""
    bar: Any = None
    """The whole run's progress bar (steps), or None when progress is off."""
    selected: dict[str, Any] = field(default_factory=dict)
    """Which epoch's network the model file holds (``training.selection``), set when the run finishes."""

    @property
    def adapter(self) -> Any:
        from modality_adapters import get_adapter

        return get_adapter(self.cfg.modality)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast (CUDA by default; on CPU when asked, which is how the path is tested without a GPU)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def to_device(x: torch.Tensor, run_device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(run_device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def batches(order: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Batches of ``order``; a trailing batch of one is dropped when there are others (BatchNorm needs two)."""
    chunks = [list(order[i : i + batch_size]) for i in range(0, len(order), batch_size)]
    if len(chunks) > 1 and len(chunks[-1]) < 2:
        chunks.pop()
    yield from chunks


def predict(run: Run, tensors: Sequence[torch.Tensor], *, amp: bool | None = None) -> torch.Tensor:
    """Logits (float32, CPU) of the network in eval mode on un-augmented inputs, in order."""
    amp = run.amp if amp is None else amp
    net, adapter, params = run.net, run.adapter, run.data.params
    was_training = net.training
    net.eval()
    out = []
    with torch.no_grad(), autocast(run.d.device, amp):
        for start in range(0, len(tensors), run.cfg.batch_size):
            chunk = tensors[start : start + run.cfg.batch_size]
            x = torch.stack([adapter.training_input(t, **params) for t in chunk])
            out.append(net(to_device(x, run.d.device, run.channels_last)).float().cpu())
    net.train(was_training)
    return torch.cat(out)


def _set_train_mode(run: Run) -> None:
    # A frozen backbone keeps its BatchNorm statistics (and no drop path): the whole net runs in eval mode.
    run.model.train(not run.cfg.freeze_backbone)


def train_epoch(run: Run, epoch: int) -> dict[str, Any]:
    cfg, d, adapter, params = run.cfg, run.d, run.adapter, run.data.params
    index = {label: i for i, label in enumerate(run.data.labels)}
    targets = torch.tensor([index[label] for label in run.data.train.labels])
    generator = torch.Generator().manual_seed(cfg.seed * 7919 + epoch * 31 + d.rank)
    mix = cfg.mixup if cfg.mixup is not None else adapter.training_mixup
    _set_train_mode(run)
    n = len(run.data.train.tensors)
    chunks = []
    for p in range(run.passes):  # each pass its own permutation; one pass per epoch keeps the historical order
        chunks += list(batches(dist_utils.shard_order(n, epoch * run.passes + p, cfg.seed, d), cfg.batch_size))
    loss_sum = correct = count = 0.0
    started = time.monotonic()
    for idx in chunks:
        cached = [run.data.train.tensors[i] for i in idx]
        x = training_batch(adapter, cached, cfg.augment, generator, params)
        y = targets[idx]
        soft = soft_targets(y, len(run.data.labels), cfg.label_smoothing)
        x, soft = mixup(x, soft, mix if cfg.augment else 0.0, generator)
        x, soft, y = to_device(x, d.device, run.channels_last), soft.to(d.device), y.to(d.device)
        with autocast(d.device, run.amp):
            logits = run.model(x)
        loss = soft_cross_entropy(logits, soft)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.scheduler.step()
        if run.average is not None:
            run.average.update(run.net)
        loss_sum += loss.item() * len(idx)
        correct += (logits.detach().argmax(-1) == y).sum().item()
        count += len(idx)
        if run.bar is not None:
            run.bar.set_postfix_str(f"epoch {epoch + 1} loss {loss.item():.3f}", refresh=False)
            run.bar.update(1)
    loss_sum, correct, count = dist_utils.all_sum([loss_sum, correct, count], d)
    seconds = time.monotonic() - started
    return {
        "epoch": epoch + 1,
        "train_loss": loss_sum / max(count, 1),
        "train_acc": correct / max(count, 1),
        "lr": run.optimizer.param_groups[0]["lr"],
        "steps": len(chunks),
        "seconds": seconds,
        "examples_per_second": count / max(seconds, 1e-9),
    }


def validate(run: Run) -> dict[str, Any]:
    """Validation loss and accuracy (rank 0 computes them; every rank gets them)."""
    result: dict[str, Any] | None = None
    if run.d.is_main:
        logits = predict(run, run.data.val.tensors)
        index = {label: i for i, label in enumerate(run.data.labels)}
        y = torch.tensor([index[label] for label in run.data.val.labels])
        loss = torch.nn.functional.cross_entropy(logits, y)
        result = {"val_loss": float(loss), "val_acc": float((logits.argmax(-1) == y).float().mean())}
    return dict(dist_utils.broadcast(result, run.d))


def validate_epoch(run: Run) -> dict[str, Any]:
    """Validation of the network that would be saved: the weight average when there is one (``--ema``), with the
    last step's figures beside it (``val_acc_last_step``, ``val_loss_last_step``) so a run shows what it bought."""
    if run.average is None:
        return validate(run)
    last_step = validate(run)
    with run.average.swapped_in(run.net):
        result = validate(run)
    return {**result, "val_acc_last_step": last_step["val_acc"], "val_loss_last_step": last_step["val_loss"]}


def planned_steps(cfg: TrainConfig, examples: int, world: int) -> tuple[int, int]:
    """(optimizer steps per epoch, shuffled passes per epoch) of a run on ``examples`` shared by ``world`` ranks."""
    per_rank = -(-examples // world)
    passes = passes_per_epoch(len(list(batches(range(per_rank), cfg.batch_size))), cfg.epochs, cfg.min_steps)
    return max(1, len(list(batches(range(per_rank), cfg.batch_size)))) * passes, passes


def build_run(cfg: TrainConfig, d: Dist, data: PreparedData) -> Run:
    variant = cfg.model or DEFAULT_MODEL
    torch.manual_seed(cfg.seed)
    net = build_model(cfg.modality, variant, data.in_chans, len(data.labels), data.params)
    notes = [*data.notes, *(load_init(net, cfg.init) if cfg.init and not cfg.resume else [])]
    if cfg.freeze_backbone:
        freeze_backbone(net)
    elif cfg.drop_path > 0:
        install_drop_path(net, cfg.drop_path)
    cuda = d.device.type == "cuda"
    channels_last = cuda if cfg.channels_last is None else cfg.channels_last
    net = net.to(d.device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    steps, passes = planned_steps(cfg, len(data.train.tensors), d.world)
    optimizer = make_optimizer(net, cfg.lr, cfg.weight_decay)
    scheduler = make_scheduler(optimizer, steps * cfg.epochs, round(cfg.warmup_epochs * steps))
    model: nn.Module = net
    if d.enabled:
        ids = [d.device.index] if cuda else None
        # A depthwise kernel's gradient (C, 1, k, k) comes back with another stride on its dimension of size 1, the
        # same memory layout; DDP's reducer compares strides and warns on every run.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        model = nn.parallel.DistributedDataParallel(net, device_ids=ids)
    amp = cuda if cfg.amp is None else cfg.amp
    run = Run(cfg, d, variant, data, model, net, optimizer, scheduler, steps, passes, amp, channels_last, notes=notes)
    if cfg.ema > 0 and data.head != "ridge":
        run.average = WeightAverage(net, cfg.ema)
    if passes > 1 and data.head != "ridge":
        notes.append(f"{passes} passes per epoch to reach --min-steps {cfg.min_steps} ({steps * cfg.epochs} steps)")
    if cfg.resume:
        load_resume(run)
    return run


def log_epoch(run: Run, entry: dict[str, Any]) -> None:
    if run.d.is_main and run.cfg.progress:
        tqdm.write(
            f"epoch {entry['epoch']}/{run.cfg.epochs}  loss {entry['train_loss']:.4f}  acc {entry['train_acc']:.3f}  "
            f"val_loss {entry['val_loss']:.4f}  val_acc {entry['val_acc']:.3f}  lr {entry['lr']:.2e}  "
            f"{entry['examples_per_second']:.1f} ex/s",
            file=sys.stderr,
        )


def train(cfg: TrainConfig) -> TrainResult:
    """Train, validate every epoch, checkpoint, and write the deploy-form model and its reports (rank 0); on a CPU
    with ``cfg.data_parallel``, in processes of one thread each that share every batch (``training.data_parallel``)."""
    from training.data_parallel import train_in_processes, training_processes

    started = time.monotonic()
    cfg.check()
    d = dist_utils.setup(cfg.device)
    try:
        data = prepare(cfg, cfg.model or DEFAULT_MODEL, d.rank)
        steps, _ = planned_steps(cfg, len(data.train.tensors), d.world)
        processes = training_processes(cfg, d, data, steps * cfg.epochs)
        if processes > 1:
            return train_in_processes(cfg, data, processes, started)
        return train_prepared(cfg, d, data, started)
    finally:
        dist_utils.teardown(d)


def train_prepared(cfg: TrainConfig, d: Dist, data: PreparedData, started: float) -> TrainResult:
    """The run on prepared data in this process, one rank of ``d`` (the caller owns the process group)."""
    from training.outputs import finalize
    from training.plan import announce

    run = build_run(cfg, d, data)
    announce(run)
    ridge = run.data.head == "ridge"
    for epoch in range(run.start_epoch, 1 if ridge else cfg.epochs):
        entry = ridge_epoch(run) if ridge else train_epoch(run, epoch)
        entry.update(validate_epoch(run))
        with averaged(run.average, run.net):
            run.best = remember_if_best(run.best, run.net, entry) if cfg.select == "best" else None
        run.history.append(entry)
        log_epoch(run, entry)
        if d.is_main:
            save_checkpoint(run, epoch + 1)
    if run.bar is not None:
        run.bar.close()
    if run.average is not None:
        run.average.copy_to(run.net)
    dist_utils.barrier(d)
    result: TrainResult | UnirepError | None = None
    if d.is_main:
        try:
            result = finalize(run, time.monotonic() - started)
        except UnirepError as exc:  # every process reports it, none waits forever for rank 0
            result = exc
    result = dist_utils.broadcast(result, d)
    dist_utils.barrier(d)
    if isinstance(result, UnirepError):
        raise result
    assert isinstance(result, TrainResult)
    return result
