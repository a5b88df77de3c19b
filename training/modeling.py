"""The train-form network for a modality, its optional starting weights, drop path, freezing, and the deploy form.

The network is the one the service builds: UniRepLKNet for image, audio, video and point clouds; for time series
the adapter's front end (the learned embedding, or identity for weight-free maps) followed by UniRepLKNet
(``TimeSeriesModel``), with a learned embedding saved as ``embedding.*`` beside the backbone's keys.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from models import UniRepLKNet, UniRepLKNetBlock, create_model, load_checkpoint, read_state_dict, resolve_weights
from unirep_errors import CheckpointError


def build_model(modality: str, variant: str, in_chans: int, num_classes: int, params: dict[str, Any]) -> nn.Module:
    """Random train-form network, shaped as the service will serve it."""
    backbone = create_model(variant, in_chans=in_chans, num_classes=num_classes)
    if modality != "timeseries":
        return backbone
    from modality_adapters import TimeSeriesAdapter
    from modality_adapters.timeseries_embedding import TimeSeriesModel

    embedding = TimeSeriesAdapter().front_end(**params)
    return TimeSeriesModel(embedding, backbone)


def backbone_of(model: nn.Module) -> UniRepLKNet:
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    backbone = getattr(inner, "backbone", inner)
    assert isinstance(backbone, UniRepLKNet)
    return backbone


def load_init(model: nn.Module, weights: str) -> list[str]:
    """Start from a train-form checkpoint (e.g. released ImageNet weights): stem adapted, head re-initialized."""
    path = resolve_weights(weights)
    state = read_state_dict(path)
    embedding = {k[len("embedding.") :]: v for k, v in state.items() if k.startswith("embedding.")}
    rest = {k: v for k, v in state.items() if not k.startswith("embedding.")}
    notes = load_checkpoint(backbone_of(model), rest, reinit_head=True, adapt_stem_channels=True, origin=str(path))
    target = getattr(model, "embedding", None)
    if embedding and target is not None:
        try:
            target.load_state_dict(embedding, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: its time-series embedding does not fit this data: {exc}") from None
        notes.append("time-series embedding loaded")
    return notes


def freeze_backbone(model: nn.Module) -> int:
    """Train the head alone (the fast path on a CPU); returns the number of trainable parameters left."""
    head = backbone_of(model).head
    for param in model.parameters():
        param.requires_grad_(False)
    for param in head.parameters():
        param.requires_grad_(True)
    return sum(p.numel() for p in head.parameters())


def install_drop_path(model: nn.Module, rate: float) -> list[Any]:
    """Stochastic depth on every block's residual branch, rising linearly with depth to ``rate`` (official rule).

    Done with forward hooks, so the serving network needs no training-only code; the hooks are removed (the
    returned handles) before the model is reparameterized.
    """
    blocks = backbone_of(model).blocks()
    handles = []
    for i, block in enumerate(blocks):
        block_rate = rate * i / max(1, len(blocks) - 1)
        if block_rate > 0:
            handles.append(block.register_forward_hook(_drop_path_hook(block_rate)))
    return handles


def _drop_path_hook(rate: float) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]:
    keep = 1.0 - rate

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        if not module.training:
            return output
        x = inputs[0]
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = torch.empty(shape, device=x.device, dtype=x.dtype).bernoulli_(keep) / keep
        return x + (output - x) * mask

    return hook


def deploy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The reparameterized (deploy-form) state_dict of a copy of ``model``, in the keys the service loads."""
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    clone = copy.deepcopy(inner).float().to("cpu").to(memory_format=torch.contiguous_format)
    clone.eval()
    for block in clone.modules():
        if isinstance(block, UniRepLKNetBlock):
            block._forward_hooks.clear()
    backbone_of(clone).reparameterize()
    state = backbone_of(clone).state_dict()
    embedding = getattr(clone, "embedding", None)
    if embedding is not None:
        state = {**{f"embedding.{k}": v for k, v in embedding.state_dict().items()}, **state}
    return state
