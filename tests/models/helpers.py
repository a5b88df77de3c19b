"""Shared helpers for model tests: perturb every statistic so that each one changes the output."""

from __future__ import annotations

import torch
from torch import nn

from models.layers import GRNwithNHWC
from models.unireplknet import UniRepLKNetBlock


@torch.no_grad()
def perturb(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Random BN statistics and affine, layer scales near 1 and non-zero GRN parameters (eval semantics)."""

    def rand(shape: torch.Size, low: float, high: float) -> torch.Tensor:
        return torch.rand(shape, generator=generator) * (high - low) + low

    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.copy_(rand(module.running_mean.shape, -0.3, 0.3))
            module.running_var.copy_(rand(module.running_var.shape, 0.5, 2.0))
            module.weight.copy_(rand(module.weight.shape, 0.5, 1.5))
            module.bias.copy_(rand(module.bias.shape, -0.2, 0.2))
        elif isinstance(module, GRNwithNHWC):
            module.gamma.copy_(rand(module.gamma.shape, -0.5, 0.5))
            if module.use_bias:
                module.beta.copy_(rand(module.beta.shape, -0.2, 0.2))
        elif isinstance(module, UniRepLKNetBlock) and module.gamma is not None:
            module.gamma.copy_(rand(module.gamma.shape, 0.2, 0.6))
    return model.eval()
