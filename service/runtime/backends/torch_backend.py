"""The eager deploy form (``torch``), and on CUDA the same module replayed from one CUDA graph per batch size
(``cudagraphs``): a fixed bucket has fixed shapes, so every launch of a batch can be recorded once at warm-up and
replayed with one call, which removes the per-kernel launch overhead that dominates small models at small batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from service.runtime.backends.base import BackendSpec, BuildRequest, Runner
from service.runtime.backends.cache import ExportCache


class TorchRunner(Runner):
    name = "torch"

    def __init__(self, request: BuildRequest) -> None:
        self.module: nn.Module = request.module
        self.device = request.device
        self.autocast_dtype = request.autocast_dtype
        self.channels_last = request.channels_last

    def _autocast(self) -> AbstractContextManager[object]:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @torch.inference_mode()
    def eager(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            features = self.module.forward_features(x)  # type: ignore[operator]
            logits = self.module.forward_head(features)  # type: ignore[operator]
        return features.float(), logits.float()

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.eager(x)


class CudaGraphRunner(TorchRunner):
    """One captured graph per batch size; a size that was not prepared runs eagerly."""

    name = "cudagraphs"
    dynamic_batch = False

    def __init__(self, request: BuildRequest) -> None:
        super().__init__(request)
        self.input_shape = request.input_shape
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.pool: Any = None

    def prepare(self, batch_sizes: Sequence[int]) -> None:
        # Largest first, sharing one memory pool: smaller graphs reuse the largest one's blocks.
        for size in sorted(set(batch_sizes), reverse=True):
            static_in = torch.zeros((size, *self.input_shape), device=self.device)
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(2):  # settle cuDNN's algorithm choice and the allocator before recording
                    self.eager(static_in)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                features, logits = self.eager(static_in)
            if self.pool is None:
                self.pool = graph.pool()
            self.graphs[size] = (graph, static_in, features, logits)

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        captured = self.graphs.get(int(x.shape[0]))
        if captured is None:
            return self.eager(x)
        graph, static_in, features, logits = captured
        static_in.copy_(x, non_blocking=True)
        graph.replay()
        return features.clone(), logits.clone()


class TorchSpec(BackendSpec):
    name = "torch"
    devices: tuple[str, ...] = ("cpu", "cuda")

    def unavailable_reason(self, device_type: str) -> str | None:
        return None if device_type in self.devices else f"torch does not run on {device_type!r} here"

    def version(self) -> str:
        return torch.__version__

    def build(self, request: BuildRequest, cache: ExportCache) -> Runner:
        return TorchRunner(request)


class CudaGraphSpec(TorchSpec):
    name = "cudagraphs"
    devices: tuple[str, ...] = ("cuda",)

    def unavailable_reason(self, device_type: str) -> str | None:
        if device_type != "cuda":
            return "CUDA graphs need a CUDA device"
        if not torch.cuda.is_available():
            return "no CUDA device is visible"
        return None

    def build(self, request: BuildRequest, cache: ExportCache) -> Runner:
        return CudaGraphRunner(request)
