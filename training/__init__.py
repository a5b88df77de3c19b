"""Training and evaluating UniRepLKNet on your own labelled data, for any of the five modalities.

Public API (what ``unirep train`` / ``unirep eval`` call, and what scripts should use)::

    from training import TrainConfig, train, evaluate

    result = train(TrainConfig(modality="audio", data="words/", out="runs/words", epochs=30))
    result.weights            # runs/words/model.safetensors: deploy form, metadata = everything serving needs
    result.val_accuracy       # on the held-out (stratified, seeded) or --val set
    report = evaluate("audio", "test_words/", result.weights)
    report.accuracy, report.macro_f1, report.per_class, report.confusion

``train`` reads DATA (a folder of class subfolders, a CSV/JSONL ``path,label`` manifest, or for time series a
UCR/UEA ``.ts`` file) through the service's own adapter, caches the decoded examples, trains with the official
recipe (AdamW, warmup + cosine, label smoothing, drop path, train-only augmentations defined on each adapter),
and writes ``model.safetensors``, ``metrics.json``, ``confusion.png``, ``curves.png`` and ``checkpoint.pt``
(train form + optimizer, for ``TrainConfig(resume=...)``). Under ``torchrun`` it trains data-parallel, and on
a CPU too with ``data_parallel``, in processes it starts itself (``training.data_parallel``).
Problems with the data raise ``unirep_errors.DatasetError`` (a ``UnirepError``) with a message for the user.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from training.config import EvalReport, TrainConfig, TrainResult

if TYPE_CHECKING:
    from training.loop import train
    from training.scoring import evaluate

__all__ = ["EvalReport", "TrainConfig", "TrainResult", "evaluate", "train"]

_LAZY = {"train": "training.loop", "evaluate": "training.scoring"}
"""``train`` and ``evaluate`` load torch and the service; importing the package (its config types) must not."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")
