"""``unirep eval``: a model file, loaded exactly as the service loads it, run on a labelled data set
(``model_outputs``) and scored (``evaluate``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from servable.build import build_served_model
from servable.config import ModalitySettings
from training.config import EvalReport
from training.data import discover
from training.decoding import decode_all, default_cache_dir
from training.distributed import pick_device
from training.metrics import report
from unirep_errors import DatasetError


@dataclass(frozen=True)
class ModelOutputs:
    """A model file's outputs on a labelled data set: its labels, each decoded example's class index and logits."""

    labels: list[str]
    targets: list[int]
    logits: torch.Tensor
    skipped: list[tuple[str, str]]


def model_outputs(
    modality: str,
    data: str | Path,
    weights: str | Path,
    *,
    batch_size: int = 32,
    device: str = "auto",
    workers: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> ModelOutputs:
    """Decode ``data`` with the served decoder and params of ``weights`` and run the served network on it."""
    from modality_adapters import get_adapter

    adapter = get_adapter(modality)
    served = build_served_model(ModalitySettings(weights=str(weights)).resolve(modality), adapter)
    examples = discover(data, modality)
    labels = list(served.labels)
    unknown = sorted({e.label for e in examples} - set(labels))
    if unknown:
        shown = labels if len(labels) <= 20 else [*labels[:20], "..."]
        raise DatasetError(f"the data has class(es) {unknown} that the model does not know (its labels: {shown})")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    decoded = decode_all(
        modality, examples, served.params, form="serve", cache_dir=cache, workers=workers, progress=progress
    )
    if not decoded.tensors:
        first = "; ".join(f"{s}: {r}" for s, r in decoded.skipped[:3])
        raise DatasetError(f"none of the {len(decoded.skipped)} files could be decoded ({first})")
    dev = pick_device(device)
    assert served.module is not None  # built here, not described by a remote worker
    module = served.module.to(dev).eval()
    outputs: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(decoded.tensors), batch_size):
            x = torch.stack(decoded.tensors[start : start + batch_size]).to(dev)
            outputs.append(module(x).float().cpu())
    index = {label: i for i, label in enumerate(labels)}
    return ModelOutputs(labels, [index[v] for v in decoded.labels], torch.cat(outputs), list(decoded.skipped))


def evaluate(
    modality: str,
    data: str | Path,
    weights: str | Path,
    *,
    batch_size: int = 32,
    device: str = "auto",
    workers: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> EvalReport:
    """Decode ``data`` with the served decoder and params of ``weights``, predict, and report."""
    out = model_outputs(
        modality, data, weights, batch_size=batch_size, device=device, workers=workers, cache_dir=cache_dir,
        progress=progress,
    )  # fmt: skip
    return report(out.targets, out.logits.argmax(-1).tolist(), out.labels, out.skipped)
