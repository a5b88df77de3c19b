"""Serving a file made by ``unirep train``: its metadata configures the modality, and settings may not contradict it.

``weights = "DIR/model.safetensors"`` alone is enough: the file names its variant, input channels, labels,
adapter params and multi-label flag. A setting given explicitly (TOML, environment or ``--set``) that disagrees
with the file is a startup error naming both values, because serving a model with another preprocessing or label
list than it was trained with would answer wrongly without any sign of it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from modality_adapters import AUTO_WEIGHTS
from models.trained import TrainedModelInfo, read_trained_info
from servable.config import ModalityConfig
from unirep_errors import CheckpointError


def trained_info(cfg: ModalityConfig) -> TrainedModelInfo | None:
    """The trained-model metadata of the configured weights, when they are such a file."""
    if cfg.weights is None or cfg.weights == AUTO_WEIGHTS:
        return None
    return read_trained_info(cfg.weights)


def _same(a: Any, b: Any) -> bool:
    norm = lambda v: list(v) if isinstance(v, tuple | list) else v  # noqa: E731
    return bool(norm(a) == norm(b))


def _contradictions(cfg: ModalityConfig, info: TrainedModelInfo) -> list[str]:
    found = []
    if "model" in cfg.explicit and cfg.model != info.model:
        found.append(f"model is {cfg.model!r} but the file holds {info.model!r}")
    if "in_chans" in cfg.explicit and cfg.in_chans != info.in_chans:
        found.append(f"in_chans is {cfg.in_chans} but the file takes {info.in_chans}")
    if "num_classes" in cfg.explicit and cfg.num_classes != info.num_classes:
        found.append(f"num_classes is {cfg.num_classes} but the file has {info.num_classes} labels")
    if "label_set" in cfg.explicit and cfg.label_set is not None:
        found.append(f"label_set is {cfg.label_set!r} but the file carries its own {info.num_classes} labels")
    if "multi_label" in cfg.explicit and cfg.multi_label != info.multi_label:
        found.append(f"multi_label is {cfg.multi_label} but the file was trained with {info.multi_label}")
    for key, value in cfg.params.items():
        if key in info.params and not _same(value, info.params[key]):
            found.append(f"params.{key} is {value!r} but the file was trained with {info.params[key]!r}")
    return found


def apply_trained(cfg: ModalityConfig, info: TrainedModelInfo) -> ModalityConfig:
    """``cfg`` completed from the file's metadata; a ``CheckpointError`` when a setting contradicts it."""
    if info.modality != cfg.modality:
        raise CheckpointError(f"[{cfg.modality}] {cfg.weights} was trained for {info.modality}, not {cfg.modality}")
    found = _contradictions(cfg, info)
    if found:
        raise CheckpointError(
            f"[{cfg.modality}] settings contradict the trained model {cfg.weights}: "
            + "; ".join(found)
            + ". Remove those settings (the file configures them) or use a matching file"
        )
    return replace(
        cfg,
        model=info.model,
        in_chans=info.in_chans,
        label_set=None,
        num_classes=info.num_classes,
        params={**info.params, **cfg.params},
        multi_label=info.multi_label,
        adapt_stem=False,
        reinit_head=False,
    )
