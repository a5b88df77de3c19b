"""UniRepLKNet (Ding et al., CVPR 2024, arXiv 2311.15599): a faithful reimplementation of the official model.

Module tree, parameter names and numerics follow AILab-CVC/UniRepLKNet ``unireplknet.py`` (commit b5677d8), so the
released checkpoints load strictly in train form and, after ``reparameterize``, in deploy form. The reference data
in ``shared/reference`` proves equality to about 1e-6 in both forms.

What differs from the official file, on purpose:
- the deploy form has a fast forward (see ``UniRepLKNetBlock._deploy_forward``) that gives the same outputs with
  fewer passes over the large activations; ``set_fast_forward(False)`` restores the straight transcription;
- no iGEMM CUDA extension, no gradient checkpointing, no MMDet/MMSeg backbone mode: this is an inference service;
- ``forward_features`` / ``forward_stages`` expose the pooled embedding and the four stage maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from models.kernels import KernelSizes, default_kernel_sizes
from models.layers import (
    DILATED_BRANCHES,
    DilatedReparamBlock,
    GRNwithNHWC,
    LayerNorm,
    NCHWtoNHWC,
    NHWCtoNCHW,
    SEBlock,
    depthwise_conv,
)
from unirep_errors import ModelError

SMALL_KERNELS = (3, 5)


class UniRepLKNetBlock(nn.Module):
    """``y = x + gamma * pwconv2(GRN(GELU(pwconv1(SE(BN(dwconv(x)))))))`` in train form; gamma, BN and the GRN
    bias are folded away in deploy form."""

    def __init__(self, dim: int, kernel_size: int, deploy: bool = False, layer_scale_init_value: float = 1e-6) -> None:
        super().__init__()
        self.fast_forward = True
        self.dwconv: nn.Module
        self.norm: nn.Module
        if kernel_size == 0:
            self.dwconv = nn.Identity()
            self.norm = nn.Identity()
        elif kernel_size >= 7 and kernel_size in DILATED_BRANCHES:
            self.dwconv = DilatedReparamBlock(dim, kernel_size, deploy=deploy)
            self.norm = nn.Identity() if deploy else nn.BatchNorm2d(dim)
        elif kernel_size in SMALL_KERNELS:
            self.dwconv = depthwise_conv(dim, kernel_size, bias=deploy)
            self.norm = nn.Identity() if deploy else nn.BatchNorm2d(dim)
        else:
            raise ModelError(
                f"block kernel size must be 0, 3, 5 or one of {sorted(DILATED_BRANCHES)}; got {kernel_size}"
            )
        self.se = SEBlock(dim, dim // 4)
        ffn_dim = 4 * dim
        self.pwconv1 = nn.Sequential(NCHWtoNHWC(), nn.Linear(dim, ffn_dim))
        self.act = nn.Sequential(nn.GELU(), GRNwithNHWC(ffn_dim, use_bias=not deploy))
        if deploy:
            self.pwconv2 = nn.Sequential(nn.Linear(ffn_dim, dim), NHWCtoNCHW())
        else:
            self.pwconv2 = nn.Sequential(nn.Linear(ffn_dim, dim, bias=False), NHWCtoNCHW(), nn.BatchNorm2d(dim))
        self.gamma: nn.Parameter | None = None
        if not deploy and layer_scale_init_value > 0:
            self.gamma = nn.Parameter(layer_scale_init_value * torch.ones(dim))

    @property
    def is_deploy(self) -> bool:
        return len(self.pwconv2) == 2 and self.gamma is None and not isinstance(self.norm, nn.BatchNorm2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast_forward and self.is_deploy and not self.training:
            return self._deploy_forward(x)
        y = self.se(self.norm(self.dwconv(x)))
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            y = self.gamma.view(1, -1, 1, 1) * y
        return x + y

    def _deploy_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The deploy-form block with per-sample scales folded into the pointwise weights.

        SE's gate multiplies the input of pwconv1 and GRN's factor the input of pwconv2, channel-wise per sample.
        Scaling the (dim x 4dim) weight instead of the (H*W x 4dim) activation saves a full pass over the largest
        tensor of the block whenever H*W exceeds the channel count (all early stages); late stages at small
        resolutions scale the activation instead. Both are exact rewrites of the same products.
        """
        y = self.dwconv(x)
        batch, channels, height, width = y.shape
        se_gate = self.se.gate(y)  # (B, C)
        y_nhwc = y.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
        linear1 = cast(nn.Linear, self.pwconv1[1])
        linear2 = cast(nn.Linear, self.pwconv2[0])
        grn = cast(GRNwithNHWC, self.act[1])
        fold_into_weights = height * width > channels
        if fold_into_weights and batch == 1:
            h = F.linear(y_nhwc, linear1.weight * se_gate, linear1.bias)
        elif fold_into_weights:
            w1 = linear1.weight.unsqueeze(0) * se_gate.unsqueeze(1)  # (B, 4C, C)
            h = torch.baddbmm(linear1.bias, y_nhwc, w1.transpose(1, 2))
        else:
            h = F.linear(y_nhwc * se_gate.unsqueeze(1), linear1.weight, linear1.bias)
        h = F.gelu(h)
        grn_scale = grn.scale(h)  # (B, 1, 4C)
        if fold_into_weights and batch == 1:
            out = F.linear(h, linear2.weight * grn_scale[0], linear2.bias)
        elif fold_into_weights:
            w2 = linear2.weight.unsqueeze(0) * grn_scale  # (B, C, 4C)
            out = torch.baddbmm(linear2.bias, h, w2.transpose(1, 2))
        else:
            out = F.linear(h * grn_scale.to(h.dtype), linear2.weight, linear2.bias)
        out = out.view(batch, height, width, channels).permute(0, 3, 1, 2)
        return x + out

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold dilated branches, the block BN, layer scale, GRN beta and the BN after pwconv2 (official order)."""
        if isinstance(self.dwconv, DilatedReparamBlock):
            self.dwconv.merge_dilated_branches()
        if isinstance(self.norm, nn.BatchNorm2d):
            bn = self.norm
            assert bn.running_var is not None and bn.running_mean is not None
            scale = bn.weight / (bn.running_var + bn.eps).sqrt()
            conv = self.dwconv.lk_origin if isinstance(self.dwconv, DilatedReparamBlock) else self.dwconv
            assert isinstance(conv, nn.Conv2d)
            old_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            fused = depthwise_conv(conv.in_channels, conv.kernel_size[0], bias=True)
            fused = fused.to(conv.weight.device, conv.weight.dtype)
            fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            assert fused.bias is not None
            fused.bias.copy_(bn.bias + (old_bias - bn.running_mean) * scale)
            if isinstance(self.dwconv, DilatedReparamBlock):
                self.dwconv.lk_origin = fused
            else:
                self.dwconv = fused
            self.norm = nn.Identity()
        final_scale: torch.Tensor | float = 1.0
        if self.gamma is not None:
            final_scale = self.gamma.detach().clone()
            self.gamma = None
        grn = cast(GRNwithNHWC, self.act[1])
        if len(self.pwconv2) == 3:
            linear = cast(nn.Linear, self.pwconv2[0])
            bn = cast(nn.BatchNorm2d, self.pwconv2[2])
            assert bn.running_var is not None and bn.running_mean is not None
            linear_bias: torch.Tensor = (
                torch.zeros_like(bn.running_mean) if linear.bias is None else linear.bias.detach()
            )
            if grn.use_bias:
                linear_bias = linear_bias + linear.weight @ grn.beta.detach().reshape(-1)
                del grn.beta
                grn.use_bias = False
            scale = bn.weight / (bn.running_var + bn.eps).sqrt()
            fused_linear = nn.Linear(linear.in_features, linear.out_features, bias=True)
            fused_linear = fused_linear.to(linear.weight.device, linear.weight.dtype)
            fused_linear.weight.copy_(linear.weight * (scale * final_scale).view(-1, 1))
            fused_linear.bias.copy_((bn.bias + (linear_bias - bn.running_mean) * scale) * final_scale)
            self.pwconv2 = nn.Sequential(fused_linear, self.pwconv2[1])


class UniRepLKNet(nn.Module):
    """The network: a 4-stage stem/downsample pyramid of UniRepLKNet blocks, mean-pool, LayerNorm, Linear head."""

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        depths: Sequence[int] = (3, 3, 27, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        kernel_sizes: Sequence[Sequence[int]] | None = None,
        deploy: bool = False,
        layer_scale_init_value: float = 1e-6,
        head_init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        depths, dims = tuple(depths), tuple(dims)
        if len(depths) != 4 or len(dims) != 4:
            raise ModelError(f"UniRepLKNet needs 4 depths and 4 dims, got depths={depths} dims={dims}")
        if kernel_sizes is None:
            kernel_sizes = default_kernel_sizes(depths)
        kernel_sizes = tuple(tuple(stage) for stage in kernel_sizes)
        if [len(stage) for stage in kernel_sizes] != list(depths):
            raise ModelError(f"kernel_sizes {kernel_sizes} do not match depths {depths}: one kernel size per block")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.depths = depths
        self.dims = dims
        self.kernel_sizes: KernelSizes = kernel_sizes

        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(
            nn.Sequential(
                nn.Conv2d(in_chans, dims[0] // 2, kernel_size=3, stride=2, padding=1),
                LayerNorm(dims[0] // 2, eps=1e-6, data_format="channels_first"),
                nn.GELU(),
                nn.Conv2d(dims[0] // 2, dims[0], kernel_size=3, stride=2, padding=1),
                LayerNorm(dims[0], eps=1e-6, data_format="channels_first"),
            )
        )
        for i in range(3):
            self.downsample_layers.append(
                nn.Sequential(
                    nn.Conv2d(dims[i], dims[i + 1], kernel_size=3, stride=2, padding=1),
                    LayerNorm(dims[i + 1], eps=1e-6, data_format="channels_first"),
                )
            )
        self.stages = nn.ModuleList(
            nn.Sequential(
                *(
                    UniRepLKNetBlock(dims[i], kernel_sizes[i][j], deploy, layer_scale_init_value)
                    for j in range(depths[i])
                )
            )
            for i in range(4)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)
        self.apply(self._init_weights)
        with torch.no_grad():
            self.head.weight.mul_(head_init_scale)
            self.head.bias.mul_(head_init_scale)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d | nn.Linear) and module.weight.device.type != "meta":
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @property
    def is_deploy(self) -> bool:
        return all(block.is_deploy for block in self.blocks())

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage outputs, at strides 4, 8, 16 and 32."""
        maps = []
        for downsample, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(downsample(x))
            maps.append(x)
        return maps

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled, normed embedding the head classifies: (B, dims[-1])."""
        for downsample, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(downsample(x))
        return self.norm(x.mean(dim=(-2, -1)))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def reparameterize(self) -> UniRepLKNet:
        """Turn this train-form model into the deploy form in place (on whatever device it lives); returns self."""
        for block in self.blocks():
            block.reparameterize()
        return self

    def set_fast_forward(self, enabled: bool) -> None:
        """Switch between our fast forward and a straight transcription of the official one (for checks and
        for the benchmark's baseline); both compute the same function."""
        for module in self.modules():
            if isinstance(module, UniRepLKNetBlock | LayerNorm):
                module.fast_forward = enabled

    def blocks(self) -> list[UniRepLKNetBlock]:
        return [block for block in self.modules() if isinstance(block, UniRepLKNetBlock)]


def reparameterize(model: UniRepLKNet) -> UniRepLKNet:
    """Convert ``model`` to its deploy form in place; BN folding uses its running statistics (eval semantics)."""
    return model.reparameterize()
