"""Which devices a service runs on, and at which precision: decisions kept apart from the worker so that they are
testable without a GPU."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    autocast_dtype: torch.dtype | None
    """None: plain fp32."""
    channels_last: bool

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.autocast_dtype, "fp32")


def choose_precision(device_type: str, requested: str = "auto", bf16_supported: bool = True) -> Precision:
    """fp32 on CPU; on CUDA bf16 autocast when the GPU has it (Ampere and later), else fp16; channels_last on CUDA.

    bf16 first because it keeps fp32's range (LayerNorm/GRN statistics do not overflow); fp16 is the fallback
    for older GPUs. An explicit request wins, except that bf16 on a GPU without it falls back to fp16.
    """
    on_cuda = device_type == "cuda"
    if requested == "fp32" or (requested == "auto" and not on_cuda):
        return Precision(None, on_cuda)
    if requested == "fp16":
        return Precision(torch.float16, on_cuda)
    if requested in ("auto", "bf16"):
        if on_cuda and not bf16_supported:
            return Precision(torch.float16, True)
        return Precision(torch.bfloat16, on_cuda)
    raise ValueError(f"unknown precision {requested!r}; use auto, fp32, bf16 or fp16")


def resolve_devices(spec: str) -> list[torch.device]:
    """'auto' -> every visible CUDA GPU, else the CPU; 'cuda' -> all GPUs; otherwise a comma-separated list."""
    spec = spec.strip().lower()
    if spec in ("auto", "cuda"):
        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            return [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        if spec == "cuda":
            raise RuntimeError("device 'cuda' was requested but no CUDA GPU is visible")
        return [torch.device("cpu")]
    return [torch.device(part.strip()) for part in spec.split(",")]
