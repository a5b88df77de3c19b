"""TensorRT on CUDA: the ONNX export parsed by TensorRT's ONNX parser into an engine with one optimization profile
covering batch sizes 1..max_batch_size (a dynamic batch), built in the precision the worker serves in (fp16 or
bf16 kernels allowed, fp32 accumulation), and kept serialized in the export cache keyed also by the GPU model,
since an engine only runs on the GPU kind it was built for.

The ``tensorrt`` package ships in the GPU image only; without it, or without a GPU, the backend reports why.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

from service.runtime.backends.base import BackendError, BuildRequest, Runner
from service.runtime.backends.cache import ExportCache, entry_key
from service.runtime.backends.exported import ExportedSpec
from service.runtime.backends.onnx_export import INPUT, OUTPUTS, export_onnx

ENGINE_NAME = "model.plan"
WORKSPACE_BYTES = 4 << 30


def unavailable_reason(device_type: str, cuda_available: bool, tensorrt_installed: bool) -> str | None:
    """Why TensorRT cannot run (None: it can); pure, so the decision is tested on machines without a GPU."""
    if device_type != "cuda":
        return "TensorRT runs on CUDA GPUs only"
    if not cuda_available:
        return "no CUDA device is visible"
    if not tensorrt_installed:
        return "the tensorrt package is not installed (it ships in the GPU image: pip install tensorrt)"
    return None


def _build_engine(onnx_path: Path, request: BuildRequest) -> bytes:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT could not parse the ONNX export: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if request.autocast_dtype == torch.float16:
        config.set_flag(trt.BuilderFlag.FP16)
    elif request.autocast_dtype == torch.bfloat16:
        config.set_flag(trt.BuilderFlag.BF16)
    profile = builder.create_optimization_profile()
    shape = tuple(request.input_shape)
    top = request.max_batch_size
    profile.set_shape(INPUT, (1, *shape), (top, *shape), (top, *shape))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise BackendError("TensorRT failed to build an engine (see its log above)")
    return bytes(engine)


class TensorRtRunner(Runner):
    name = "tensorrt"

    def __init__(self, engine_path: Path, device: torch.device) -> None:
        import tensorrt as trt

        self.device = device
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise BackendError(f"TensorRT could not deserialize {engine_path}")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(device)

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.device, torch.float32, non_blocking=True).contiguous()
        self.context.set_input_shape(INPUT, tuple(x.shape))
        outputs: dict[str, torch.Tensor] = {}
        for name in OUTPUTS:
            shape = tuple(self.context.get_tensor_shape(name))
            outputs[name] = torch.empty(shape, device=self.device, dtype=torch.float32)
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        self.context.set_tensor_address(INPUT, x.data_ptr())
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise BackendError("TensorRT failed to run the batch")
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        return outputs["features"], outputs["logits"]


class TensorRtSpec(ExportedSpec):
    name = "tensorrt"
    devices = ("cuda",)
    dynamic_batch = False  # the profile's batch range is part of the engine

    def unavailable_reason(self, device_type: str) -> str | None:
        return unavailable_reason(
            device_type, torch.cuda.is_available(), importlib.util.find_spec("tensorrt") is not None
        )

    def version(self) -> str:
        import tensorrt as trt

        return str(trt.__version__)

    def cache_key(self, request: BuildRequest) -> str:
        gpu: Any = torch.cuda.get_device_name(request.device) if request.device.type == "cuda" else "none"
        return entry_key(base=super().cache_key(request), gpu=gpu)

    def write(self, request: BuildRequest, directory: Path, cache: ExportCache | None = None) -> None:
        onnx_path = export_onnx(request.module, request.input_shape, directory / "model.onnx")
        (directory / ENGINE_NAME).write_bytes(_build_engine(onnx_path, request))
        onnx_path.unlink()

    def load(self, request: BuildRequest, entry: Path) -> Runner:
        return TensorRtRunner(entry / ENGINE_NAME, request.device)
