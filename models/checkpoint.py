"""Reading checkpoints in every layout they occur in, and loading them into the right form of the model.

Released files are fp32 train-form state_dicts, sometimes wrapped under ``model`` or ``state_dict`` and with
``module.`` (DataParallel) or ``backbone.`` (MMDet/MMSeg) prefixes; converted files are deploy form, often
safetensors. The form is detected from the keys, so one ``load_model`` call handles both. Loading is strict:
a checkpoint that does not fit fails with a message naming the first mismatched key. Two departures from the
file are explicit options, never silent: re-initializing a head of another size, and adapting an RGB stem.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from models.hub import resolve_weights
from models.registry import get_model_config
from models.unireplknet import UniRepLKNet
from unirep_errors import CheckpointError

log = logging.getLogger(__name__)

Form = Literal["train", "deploy"]
StateDict = dict[str, torch.Tensor]
STEM_KEY = "downsample_layers.0.0.weight"
_WRAPPER_KEYS = ("model", "state_dict", "model_ema", "module")
_PREFIXES = ("module.", "backbone.", "_orig_mod.")
_TRAIN_ONLY = re.compile(r"^stages\.\d+\.\d+\.(gamma|pwconv2\.2\.|norm\.|act\.1\.beta|dwconv\.origin_bn)")


@dataclass(frozen=True)
class LoadedWeights:
    """Which weights a model runs on; every response names them, so random weights are never hidden."""

    source: str
    form: Form | None
    num_classes: int
    in_chans: int
    notes: tuple[str, ...] = ()

    @property
    def is_random(self) -> bool:
        return self.source == "random-init"


def read_state_dict(path: str | os.PathLike[str]) -> StateDict:
    """A clean state_dict from a file: unwrapped, prefixes stripped, tensors only."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return normalize_state_dict(load_torch_file(path), origin=str(path))
    with _read_errors(path):
        from safetensors.torch import load_file

        raw = load_file(str(path), device="cpu")
    return normalize_state_dict(raw, origin=str(path))


def load_torch_file(path: str | os.PathLike[str], context: str = "") -> Any:
    """``torch.load`` of a file in weights-only mode, every failure a ``CheckpointError`` that names the file
    (``context``, e.g. ``"--resume: "``, leads the message)."""
    with _read_errors(path, context):
        return torch.load(path, map_location="cpu", weights_only=True)


@contextmanager
def _read_errors(path: str | os.PathLike[str], context: str = "") -> Iterator[None]:
    """Whatever reading ``path`` raises becomes a ``CheckpointError`` naming the file: a missing, truncated or
    foreign file must not surface as a pickle or safetensors traceback, whoever reads it."""
    try:
        yield
    except FileNotFoundError:
        raise CheckpointError(f"{context}weights file not found: {path}") from None
    except Exception as exc:
        raise CheckpointError(f"{context}cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None


def normalize_state_dict(raw: Any, origin: str = "checkpoint") -> StateDict:
    while isinstance(raw, dict):
        wrapper = next((k for k in _WRAPPER_KEYS if k in raw and isinstance(raw[k], dict)), None)
        if wrapper is None:
            break
        raw = raw[wrapper]
    if not isinstance(raw, dict) or not raw:
        raise CheckpointError(f"{origin} holds no state_dict (found {type(raw).__name__})")
    state: StateDict = {}
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            continue
        name = str(key)
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
        state[name] = value
    if STEM_KEY not in state:
        raise CheckpointError(f"{origin} is not a UniRepLKNet checkpoint: it has no {STEM_KEY!r}")
    return state


def detect_form(state: StateDict) -> Form:
    """Train form carries BN statistics, layer scale and GRN beta inside blocks; deploy form has none of them."""
    return "train" if any(_TRAIN_ONLY.match(k) for k in state) else "deploy"


def infer_variant(state: StateDict) -> str:
    """The registered variant whose dims and depths this state_dict has."""
    from models.registry import list_models

    dims = tuple(int(state[f"downsample_layers.{i}.{3 if i == 0 else 0}.weight"].shape[0]) for i in range(4))
    depths = tuple(
        1 + max((int(k.split(".")[2]) for k in state if k.startswith(f"stages.{i}.")), default=-1) for i in range(4)
    )
    for name in list_models():
        cfg = get_model_config(name)
        if cfg.dims == dims and cfg.depths == depths:
            return name
    raise CheckpointError(f"no registered variant has dims {dims} and depths {depths}; pass the model name")


def adapt_stem(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Adapt a stem kernel trained on RGB to ``in_chans`` inputs (the timm recipe).

    One channel: sum over RGB, so a grey image gives what its RGB copy gave. More channels: repeat RGB and
    rescale by 3 / in_chans so activations keep their magnitude.
    """
    source = weight.shape[1]
    if in_chans == source:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_chans / source)
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (source / in_chans)


def describe_mismatch(model_state: StateDict, state: StateDict) -> str | None:
    """A message naming the first key (in the model's order) where the checkpoint disagrees; None when it fits."""
    for key, tensor in model_state.items():
        if key not in state:
            return f"first mismatch at {key!r}: missing from the checkpoint"
        if tuple(state[key].shape) != tuple(tensor.shape):
            ours, theirs = tuple(tensor.shape), tuple(state[key].shape)
            return f"first mismatch at {key!r}: checkpoint shape {theirs}, model shape {ours}"
    extra = [k for k in state if k not in model_state]
    if extra:
        return f"first mismatch at {extra[0]!r}: not a parameter of the model ({len(extra)} unexpected keys)"
    return None


def load_checkpoint(
    model: UniRepLKNet,
    state: StateDict,
    *,
    reinit_head: bool = False,
    adapt_stem_channels: bool = False,
    origin: str = "checkpoint",
) -> list[str]:
    """Load ``state`` into ``model`` strictly, applying only the departures asked for; returns notes on them."""
    notes: list[str] = []
    state = dict(state)
    model_state = model.state_dict()
    stem = state.get(STEM_KEY)
    if stem is not None and stem.shape[1] != model.in_chans:
        if not adapt_stem_channels:
            raise CheckpointError(
                f"{origin} has a {stem.shape[1]}-channel stem but the model takes {model.in_chans} channels; "
                "pass adapt_stem=True (--adapt-stem) to adapt it, or use a matching checkpoint",
                key=STEM_KEY,
            )
        state[STEM_KEY] = adapt_stem(stem, model.in_chans)
        notes.append(f"stem adapted from {stem.shape[1]} to {model.in_chans} input channels")
    head = state.get("head.weight")
    if head is not None and head.shape[0] != model.num_classes:
        if not reinit_head:
            raise CheckpointError(
                f"{origin} has a {head.shape[0]}-class head but the model has {model.num_classes} classes; "
                "pass reinit_head=True to drop the checkpoint's head and start a new one (it will need training)",
                key="head.weight",
            )
        log.warning(
            "%s: dropping its %d-class head; the new %d-class head is randomly initialized",
            origin,
            head.shape[0],
            model.num_classes,
        )
        state["head.weight"] = model_state["head.weight"]
        state["head.bias"] = model_state["head.bias"]
        notes.append(f"head re-initialized for {model.num_classes} classes (untrained)")
    mismatch = describe_mismatch(model_state, state)
    if mismatch is not None:
        form = "deploy" if model.is_deploy else "train"
        raise CheckpointError(f"{origin} does not fit the {form}-form model: {mismatch}")
    model.load_state_dict(state, strict=True)
    return notes


def load_model(
    name: str,
    weights: str | os.PathLike[str] | None = None,
    *,
    in_chans: int | None = None,
    num_classes: int | None = None,
    deploy: bool = True,
    adapt_stem: bool = False,
    reinit_head: bool = False,
    kernel_sizes: Any = None,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[UniRepLKNet, LoadedWeights]:
    """Build variant ``name``, load ``weights`` (a path or hub reference; None for random init) and put it in eval.

    A train-form checkpoint is loaded strictly into the train form and then reparameterized when ``deploy``;
    a deploy-form checkpoint goes straight into the deploy form (asking for its train form is an error).
    The class count follows the checkpoint unless ``num_classes`` says otherwise (then ``reinit_head`` decides).
    """
    cfg = get_model_config(name)
    in_chans = cfg.in_chans if in_chans is None else in_chans
    if weights is None:
        model = UniRepLKNet(
            in_chans,
            cfg.num_classes if num_classes is None else num_classes,
            cfg.depths,
            cfg.dims,
            kernel_sizes or cfg.kernel_sizes,
            deploy=False,
        )
        model.eval()
        if deploy:
            model.reparameterize()
        info = LoadedWeights("random-init", None, model.num_classes, in_chans, ("random initialization",))
        return model.to(device), info
    path = resolve_weights(weights, cache_dir=cache_dir)
    state = read_state_dict(path)
    form = detect_form(state)
    if form == "deploy" and not deploy:
        raise CheckpointError(f"{path} is a deploy-form checkpoint; it cannot be loaded into the train form")
    head = state.get("head.weight")
    checkpoint_classes = int(head.shape[0]) if head is not None else cfg.num_classes
    model = UniRepLKNet(
        in_chans,
        checkpoint_classes if num_classes is None else num_classes,
        cfg.depths,
        cfg.dims,
        kernel_sizes or cfg.kernel_sizes,
        deploy=form == "deploy",
    )
    notes = load_checkpoint(model, state, reinit_head=reinit_head, adapt_stem_channels=adapt_stem, origin=str(path))
    model.eval()
    if deploy and form == "train":
        model.reparameterize()
    source = os.fspath(weights)
    info = LoadedWeights(source, form, model.num_classes, in_chans, tuple(notes))
    return model.to(device), info


def save_deploy_checkpoint(model: UniRepLKNet, path: str | os.PathLike[str], metadata: dict[str, str]) -> None:
    """Write the deploy-form weights as safetensors, with the variant and provenance in the metadata."""
    from safetensors.torch import save_file

    if not model.is_deploy:
        raise CheckpointError("only a deploy-form model can be saved as a deploy checkpoint; reparameterize first")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, os.fspath(path), metadata=metadata)
