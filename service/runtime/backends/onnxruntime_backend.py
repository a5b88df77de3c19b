"""ONNX Runtime on CPU: the ONNX export (kept in the export cache, the same entry OpenVINO converts) in one session
with a dynamic batch axis.

Intra-op threads follow the service's thread budget, and their spinning is off: a spinning pool burns the cores
the decoder processes need between batches, the same collapse OpenMP's active wait policy causes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from service.runtime.backends.base import BuildRequest, Runner
from service.runtime.backends.cache import ExportCache
from service.runtime.backends.exported import ExportedSpec
from service.runtime.backends.onnx_export import ONNX_NAME, onnx_key, write_onnx


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(self, onnx_path: Path, threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if threads:
            options.intra_op_num_threads = int(threads)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        features, logits = self.session.run(["features", "logits"], {self.input_name: array})
        return torch.from_numpy(features), torch.from_numpy(logits)


class OnnxRuntimeSpec(ExportedSpec):
    name = "onnxruntime"
    devices = ("cpu",)

    def unavailable_reason(self, device_type: str) -> str | None:
        if device_type != "cpu":
            return "the onnxruntime backend runs on the CPU only"
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
        return None

    def version(self) -> str:
        import onnxruntime as ort

        return str(ort.__version__)

    def cache_key(self, request: BuildRequest) -> str:
        """The shared ONNX export itself: ONNX Runtime loads it as it is (its version decides nothing there)."""
        return onnx_key(request)

    def write(self, request: BuildRequest, directory: Path, cache: ExportCache) -> None:
        write_onnx(request, directory)

    def load(self, request: BuildRequest, entry: Path) -> Runner:
        return OnnxRuntimeRunner(entry / ONNX_NAME, request.threads)
