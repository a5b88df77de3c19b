"""OpenVINO on CPU: the ONNX export (the export cache's shared entry, which ONNX Runtime loads too) converted to
OpenVINO IR (kept in the export cache), compiled with a dynamic batch axis, fp32 inference precision and the
service's thread budget.

fp32 is forced because OpenVINO would otherwise pick bf16 on CPUs that have it, which moves the logits by far more
than the start-up check allows. Thread pinning is off: the cores are shared with the decoder processes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.runtime.backends.base import BuildRequest, Runner
from service.runtime.backends.cache import ExportCache
from service.runtime.backends.exported import ExportedSpec
from service.runtime.backends.onnx_export import cached_onnx, export_onnx, onnx_key

IR_NAME = "model.xml"


def compile_config(threads: int | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
        "ENABLE_CPU_PINNING": False,
    }
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def convert_onnx(onnx_path: Path, directory: Path) -> Path:
    """ONNX graph -> OpenVINO IR (``model.xml`` + ``model.bin``, fp32 weights) in ``directory``."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(directory / IR_NAME), compress_to_fp16=False)
    return directory / IR_NAME


def write_ir(module: torch.nn.Module, input_shape: tuple[int, ...], directory: Path) -> Path:
    """ONNX export -> OpenVINO IR in ``directory`` (no export cache: ``unirep export``)."""
    onnx_path = export_onnx(module, input_shape, directory / "model.onnx")
    path = convert_onnx(onnx_path, directory)
    onnx_path.unlink()
    return path


class OpenVinoRunner(Runner):
    name = "openvino"

    def __init__(self, ir_path: Path, threads: int | None) -> None:
        import openvino as ov

        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(ir_path)), "CPU", compile_config(threads))
        self.request = self.compiled.create_infer_request()
        names = [out.get_any_name() for out in self.compiled.outputs]
        self.features_index, self.logits_index = names.index("features"), names.index("logits")

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        self.request.infer({0: array})
        features = self.request.get_output_tensor(self.features_index).data
        logits = self.request.get_output_tensor(self.logits_index).data
        # The request reuses its output buffers: copy before the next batch overwrites them.
        return torch.from_numpy(features.copy()), torch.from_numpy(logits.copy())


class OpenVinoSpec(ExportedSpec):
    name = "openvino"
    devices = ("cpu",)

    def unavailable_reason(self, device_type: str) -> str | None:
        if device_type != "cpu":
            return "the openvino backend runs on the CPU only"
        if importlib.util.find_spec("openvino") is None:
            return "openvino is not installed"
        return None

    def version(self) -> str:
        import openvino as ov

        return str(ov.get_version())

    def write(self, request: BuildRequest, directory: Path, cache: ExportCache) -> None:
        convert_onnx(cached_onnx(request, cache), directory)

    def reject(self, request: BuildRequest, cache: ExportCache, reason: str) -> None:
        """The IR disagrees: the shared ONNX graph it came from is suspect too, so both are exported anew."""
        super().reject(request, cache, reason)
        cache.set_aside(cache.root / onnx_key(request), f"the openvino IR converted from it was rejected: {reason}")

    def load(self, request: BuildRequest, entry: Path) -> Runner:
        return OpenVinoRunner(entry / IR_NAME, request.threads)
