"""Building blocks of UniRepLKNet, named and shaped exactly as in the official ``unireplknet.py``.

The attribute names below are part of the checkpoint format (state_dict keys), so they follow the official code
even where another name would read better. The reparameterization math (folding BN and dilated branches into one
dense depthwise kernel) lives here too because it is defined by these modules' parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unirep_errors import ModelError

# Dilated Reparam Block branches for each large kernel size K: (branch kernel sizes, dilations).
# Official values (unireplknet.py, "not tuned carefully"); the equivalent size r*(k-1)+1 never exceeds K.
DILATED_BRANCHES: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    17: ((5, 9, 3, 3, 3), (1, 2, 4, 5, 7)),
    15: ((5, 7, 3, 3, 3), (1, 2, 3, 5, 7)),
    13: ((5, 7, 3, 3, 3), (1, 2, 3, 4, 5)),
    11: ((5, 5, 3, 3, 3), (1, 2, 3, 4, 5)),
    9: ((5, 5, 3, 3), (1, 2, 3, 4)),
    7: ((5, 3, 3), (1, 2, 3)),
    5: ((3, 3), (1, 2)),
}


class LayerNorm(nn.Module):
    """LayerNorm over channels for NCHW ("channels_first") or NHWC ("channels_last") tensors.

    The official channels_first variant normalizes over C with the biased variance, by hand (six elementwise
    passes); with ``fast_forward`` we compute the same statistic with one fused ``F.layer_norm`` on a
    channels-last view instead.
    """

    def __init__(self, normalized_shape: int, eps: float = 1e-6, data_format: str = "channels_last") -> None:
        super().__init__()
        if data_format not in ("channels_last", "channels_first"):
            raise ModelError(f"LayerNorm data_format must be channels_last or channels_first, not {data_format!r}")
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps = eps
        self.data_format = data_format
        self.normalized_shape = (normalized_shape,)
        self.fast_forward = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.data_format == "channels_last":
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        if self.fast_forward:
            y = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
            return y.permute(0, 3, 1, 2)
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GRNwithNHWC(nn.Module):
    """Global Response Normalization (ConvNeXt V2) on NHWC input: L2 norm over (H, W), divided by its channel mean.

    ``beta`` exists only in train form; reparameterization folds it into the following Linear.
    """

    def __init__(self, dim: int, use_bias: bool = True) -> None:
        super().__init__()
        self.use_bias = use_bias
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        if self.use_bias:
            self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """The per-sample, per-channel factor (gamma * Nx + 1) of x shaped (B, N, C): shape (B, 1, C).

        The L2 norm over N is computed as sqrt(sum(x^2)): on CPU, ``torch.norm`` reducing the outer dimension is
        several times slower than this pair of vectorized passes.
        """
        if x.dtype in (torch.float16, torch.bfloat16) or x.is_cuda:
            # Low precision (CUDA autocast): accumulate in fp32, as torch.norm does under autocast.
            gx = torch.linalg.vector_norm(x, ord=2, dim=1, keepdim=True, dtype=torch.float32)
        else:
            gx = x.pow(2).sum(dim=1, keepdim=True).sqrt()
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma.view(1, 1, -1) * nx + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        if self.use_bias:
            return (self.gamma * nx + 1) * x + self.beta
        return (self.gamma * nx + 1) * x


class NCHWtoNHWC(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class NHWCtoNCHW(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


class SEBlock(nn.Module):
    """Squeeze-and-excitation with a ReLU bottleneck of ``internal_neurons`` and a sigmoid gate."""

    def __init__(self, input_channels: int, internal_neurons: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(input_channels, internal_neurons, kernel_size=1, stride=1, bias=True)
        self.up = nn.Conv2d(internal_neurons, input_channels, kernel_size=1, stride=1, bias=True)
        self.input_channels = input_channels
        self.nonlinear = nn.ReLU(inplace=True)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The per-sample, per-channel gate in (0, 1), shape (B, C): two tiny matmuls instead of 1x1 convs."""
        pooled = x.mean(dim=(2, 3))
        hidden = F.relu(F.linear(pooled, self.down.weight.flatten(1), self.down.bias))
        return torch.sigmoid(F.linear(hidden, self.up.weight.flatten(1), self.up.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = F.adaptive_avg_pool2d(x, output_size=(1, 1))
        gate = torch.sigmoid(self.up(self.nonlinear(self.down(gate))))
        return x * gate.view(-1, self.input_channels, 1, 1)


def fuse_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias of ``bn(conv(x))`` as one conv (inference statistics)."""
    assert bn.running_var is not None and bn.running_mean is not None
    conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    std = (bn.running_var + bn.eps).sqrt()
    scale = bn.weight / std
    return conv.weight * scale.reshape(-1, 1, 1, 1), bn.bias + (conv_bias - bn.running_mean) * scale


def dilated_to_dense_kernel(kernel: torch.Tensor, dilation: int) -> torch.Tensor:
    """Spread a (C, 1, k, k) depthwise kernel onto the (C, 1, r(k-1)+1, r(k-1)+1) grid it covers when dilated."""
    if dilation == 1:
        return kernel
    channels, in_per_group, k, _ = kernel.shape
    size = dilation * (k - 1) + 1
    dense = kernel.new_zeros(channels, in_per_group, size, size)
    dense[:, :, ::dilation, ::dilation] = kernel
    return dense


def merge_dilated_into_large_kernel(large: torch.Tensor, dilated: torch.Tensor, dilation: int) -> torch.Tensor:
    """Add a dilated branch's kernel into the centre of the large kernel."""
    dense = dilated_to_dense_kernel(dilated, dilation)
    pad = large.size(2) // 2 - dense.size(2) // 2
    return large + F.pad(dense, [pad] * 4)


def depthwise_conv(channels: int, kernel_size: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(
        channels, channels, kernel_size, stride=1, padding=kernel_size // 2, dilation=1, groups=channels, bias=bias
    )


class DilatedReparamBlock(nn.Module):
    """The large-kernel depthwise mixer: a KxK conv plus parallel dilated small convs, each followed by BN.

    In deploy form only ``lk_origin`` (with bias) remains; ``merge_dilated_branches`` produces it.
    """

    def __init__(self, channels: int, kernel_size: int, deploy: bool) -> None:
        super().__init__()
        if kernel_size not in DILATED_BRANCHES:
            raise ModelError(
                f"Dilated Reparam Block kernel size must be one of {sorted(DILATED_BRANCHES)}, not {kernel_size}"
            )
        self.kernel_size = kernel_size
        self.lk_origin = depthwise_conv(channels, kernel_size, bias=deploy)
        self.kernel_sizes, self.dilates = DILATED_BRANCHES[kernel_size]
        if not deploy:
            self.origin_bn = nn.BatchNorm2d(channels)
            for k, r in zip(self.kernel_sizes, self.dilates, strict=True):
                conv = nn.Conv2d(
                    channels,
                    channels,
                    kernel_size=k,
                    stride=1,
                    padding=(r * (k - 1) + 1) // 2,
                    dilation=r,
                    groups=channels,
                    bias=False,
                )
                self.add_module(f"dil_conv_k{k}_{r}", conv)
                self.add_module(f"dil_bn_k{k}_{r}", nn.BatchNorm2d(channels))

    @property
    def is_deploy(self) -> bool:
        return not hasattr(self, "origin_bn")

    def branches(self) -> list[tuple[int, nn.Conv2d, nn.BatchNorm2d]]:
        return [
            (r, getattr(self, f"dil_conv_k{k}_{r}"), getattr(self, f"dil_bn_k{k}_{r}"))
            for k, r in zip(self.kernel_sizes, self.dilates, strict=True)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_deploy:
            return self.lk_origin(x)
        out = self.origin_bn(self.lk_origin(x))
        for _, conv, bn in self.branches():
            out = out + bn(conv(x))
        return out

    @torch.no_grad()
    def merge_dilated_branches(self) -> None:
        if self.is_deploy:
            return
        kernel, bias = fuse_bn(self.lk_origin, self.origin_bn)
        for dilation, conv, bn in self.branches():
            branch_kernel, branch_bias = fuse_bn(conv, bn)
            kernel = merge_dilated_into_large_kernel(kernel, branch_kernel, dilation)
            bias = bias + branch_bias
        merged = depthwise_conv(kernel.size(0), kernel.size(2), bias=True).to(kernel.device, kernel.dtype)
        merged.weight.copy_(kernel)
        assert merged.bias is not None
        merged.bias.copy_(bias)
        for k, r in zip(self.kernel_sizes, self.dilates, strict=True):
            delattr(self, f"dil_conv_k{k}_{r}")
            delattr(self, f"dil_bn_k{k}_{r}")
        del self.origin_bn
        self.lk_origin = merged
