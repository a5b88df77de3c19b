"""What every inference backend provides: a runner that maps a batch to (features, logits), and a spec that says
whether the backend can run on a device here and how to build its runner from the deploy-form module.

The deploy-form ``nn.Module`` stays the source of truth: every other backend is a compiled view of it (an ONNX
export, an OpenVINO IR, a TensorRT engine), built once at start, checked against it, and cached on disk.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from service.runtime.backends.cache import ExportCache
from unirep_errors import UnirepError


class BackendError(UnirepError):
    """A backend could not be built, or its outputs disagree with the eager deploy form: the service must not start."""


@dataclass(frozen=True)
class BuildRequest:
    """Everything a backend needs to compile one served model for one device."""

    module: nn.Module
    """Deploy form, eval mode, with ``forward_features`` and ``forward_head``."""
    input_shape: tuple[int, ...]
    """C x H x W of one item (the batching bucket)."""
    device: torch.device
    max_batch_size: int
    threads: int | None
    """Intra-op threads on CPU (None: the backend's default)."""
    cache_dir: Path | None
    """Where exported graphs are kept between starts (None: export into a temporary directory every start)."""
    weights_digest: str
    autocast_dtype: torch.dtype | None = None
    channels_last: bool = False


class Runner(ABC):
    """A compiled model: ``run`` takes a CPU or device batch and returns float32 (features, logits) on the device."""

    name: str
    dynamic_batch: bool = True
    """False: one compiled shape per batch size (built by ``prepare``)."""

    @abstractmethod
    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def prepare(self, batch_sizes: Sequence[int]) -> None:
        """Build whatever is per batch size (CUDA graphs, static engines); dynamic runners need nothing."""
        del batch_sizes

    def describe(self) -> str:
        return self.name


class BackendSpec(ABC):
    """One backend: its name, where it runs, whether it is installed, and how to build a runner."""

    name: str
    devices: tuple[str, ...]
    """Device types it runs on ("cpu", "cuda")."""

    @abstractmethod
    def unavailable_reason(self, device_type: str) -> str | None:
        """None when the backend can run on this device type here; otherwise why not (for logs and skips)."""

    @abstractmethod
    def version(self) -> str:
        """The library version: part of the export cache key, so an upgrade never loads a stale graph."""

    @abstractmethod
    def build(self, request: BuildRequest, cache: ExportCache) -> Runner:
        """Compile (or load from ``cache``) the request's model for its device."""


class FeaturesAndLogits(nn.Module):
    """The deploy form as one graph with two outputs, the shape every exported backend is built from."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.module.forward_features(x)  # type: ignore[operator]
        return features, self.module.forward_head(features)  # type: ignore[operator]
