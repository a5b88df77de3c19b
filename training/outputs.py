"""What a finished run leaves in its output folder, and the check that the served model is the trained one.

The deploy-form file is written, then loaded back exactly as ``unirep serve`` loads it (``build_served_model``
with nothing configured but the weights), and its logits on the validation set are compared with the train-form
network's: the largest relative difference is recorded in the file's metadata and ``metrics.json``; above
``DEPLOY_TOLERANCE`` the run fails (its checkpoint stays for inspection).
"""

from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from models.trained import TrainedModelInfo, save_trained_model
from servable.build import build_served_model
from servable.config import ModalitySettings
from training.checkpoint import CHECKPOINT_NAME
from training.config import TrainResult
from training.loop import Run
from training.metrics import report
from training.modeling import deploy_state
from training.plots import confusion_png, curves_png
from training.selection import apply_selection
from unirep_errors import ModelError

DEPLOY_TOLERANCE = 1e-4
DEPLOY_CHECK_EXAMPLES = 256
"""The deploy check runs on CPU in float32 (no TF32, no autocast) over at most this many validation examples."""


def max_relative_diff(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Per example, the largest logit difference relative to that example's largest logit; the worst example."""
    scale = reference.abs().amax(dim=-1).clamp_min(1e-6)
    return float(((reference - other).abs().amax(dim=-1) / scale).max())


def _cpu_logits(module: torch.nn.Module, inputs: list[torch.Tensor]) -> torch.Tensor:
    module.eval()
    with torch.no_grad():
        return torch.cat([module(torch.stack(inputs[i : i + 16])).float() for i in range(0, len(inputs), 16)])


def deploy_check(run: Run, weights: Path) -> float:
    """Max relative logit difference between the train form and the file as the service serves it."""
    from modality_adapters import get_adapter

    adapter = get_adapter(run.cfg.modality)
    tensors = run.data.val.tensors[:DEPLOY_CHECK_EXAMPLES]
    inputs = [adapter.training_input(t, **run.data.params) for t in tensors]
    train_form = copy.deepcopy(run.net).float().to("cpu").to(memory_format=torch.contiguous_format)
    reference = _cpu_logits(train_form, inputs)
    served = build_served_model(ModalitySettings(weights=str(weights)).resolve(run.cfg.modality), adapter)
    assert served.module is not None
    return max_relative_diff(reference, _cpu_logits(served.module, inputs))


def schedule(run: Run) -> dict[str, Any]:
    """How long the run trained, in the units that decide it: optimizer steps (and how they were reached)."""
    return {
        "epochs": run.cfg.epochs,
        "batch_size": run.cfg.batch_size * run.d.world,
        "processes": run.d.world,
        "min_steps": run.cfg.min_steps,
        "passes_per_epoch": run.passes,
        "optimizer_steps": sum(int(e.get("steps", run.steps_per_epoch)) for e in run.history),
    }


def _info(run: Run, validation: dict[str, Any]) -> TrainedModelInfo:
    return TrainedModelInfo(
        modality=run.cfg.modality,
        model=run.variant,
        in_chans=run.data.in_chans,
        labels=tuple(run.data.labels),
        params=run.data.params,
        multi_label=False,
        metrics={**validation, "schedule": schedule(run), "selected": run.selected},
        data_fingerprint=run.data.fingerprint,
        command=run.cfg.command,
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def _metrics(run: Run, validation: dict[str, Any], diff: float, seconds: float) -> dict[str, Any]:
    """metrics.json: the run's description, every epoch, the validation report, the deploy check, skipped files."""
    return {
        "modality": run.cfg.modality,
        "model": run.variant,
        "labels": run.data.labels,
        "params": run.data.params,
        "data_fingerprint": run.data.fingerprint,
        "num_train": len(run.data.train.tensors),
        "num_val": len(run.data.val.tensors),
        "world_size": run.d.world,
        "schedule": schedule(run),
        "selected": run.selected,
        "epochs": run.history,
        "validation": validation,
        "deploy_check": {"max_rel_logit_diff": diff, "tolerance": DEPLOY_TOLERANCE, "passed": diff <= DEPLOY_TOLERANCE},
        "skipped": [{"source": s, "reason": r} for s, r in run.data.skipped],
        "notes": run.notes,
        "seconds": seconds,
        "command": run.cfg.command,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def finalize(run: Run, seconds: float) -> TrainResult:
    """Write model.safetensors, metrics.json, confusion.png and curves.png; check deploy against train form."""
    from training.loop import predict
    from training.ridge_head import refit_head

    out = Path(run.cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    run.selected = apply_selection(run.cfg.select, run.best, run.net, len(run.history))
    if run.selected["epoch"] != len(run.history):
        run.notes.append(f"kept epoch {run.selected['epoch']} of {len(run.history)} (best validation accuracy)")
    if run.data.head == "train+ridge":
        refit_head(run)
    index = {label: i for i, label in enumerate(run.data.labels)}
    logits = predict(run, run.data.val.tensors)
    rep = report([index[v] for v in run.data.val.labels], logits.argmax(-1).tolist(), run.data.labels)
    validation = {"accuracy": rep.accuracy, "macro_f1": rep.macro_f1, "num_examples": rep.num_examples}
    weights = out / "model.safetensors"
    state = deploy_state(run.net)
    save_trained_model(state, weights, _info(run, validation))
    diff = deploy_check(run, weights)
    validation["deploy_max_rel_diff"] = diff
    save_trained_model(state, weights, _info(run, validation))
    epoch_rates = [e["examples_per_second"] for e in run.history]
    metrics = _metrics(run, rep.to_dict(), diff, seconds)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    confusion_png(rep.confusion, run.data.labels, out / "confusion.png")
    curves_png(run.history, out / "curves.png")
    if diff > DEPLOY_TOLERANCE:
        weights.unlink()
        raise ModelError(
            f"the deploy form differs from the train form by {diff:.3g} (relative logits; tolerance "
            f"{DEPLOY_TOLERANCE}), so no model.safetensors was kept; the train form is in {out / CHECKPOINT_NAME}"
        )
    return TrainResult(
        out_dir=out,
        weights=weights,
        checkpoint=out / CHECKPOINT_NAME,
        labels=list(run.data.labels),
        val_accuracy=rep.accuracy,
        val_macro_f1=rep.macro_f1,
        deploy_max_rel_diff=diff,
        epochs_run=len(run.history),
        num_train=len(run.data.train.tensors),
        num_val=len(run.data.val.tensors),
        skipped=run.data.skipped,
        seconds=seconds,
        examples_per_second=sum(epoch_rates) / len(epoch_rates) if epoch_rates else 0.0,
    )
