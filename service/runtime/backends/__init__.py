"""Inference backends: compiled views of the deploy form (OpenVINO, ONNX Runtime, TensorRT, CUDA graphs) behind one
runner interface, chosen per modality (``auto``: the fastest installed for the device), cached on disk and checked
against the eager model at start. The batcher, the workers' batch loop and the metrics do not depend on which.
"""

from service.runtime.backends.base import BackendError, BackendSpec, BuildRequest, Runner
from service.runtime.backends.cache import ExportCache, default_cache_dir, weights_digest
from service.runtime.backends.registry import (
    AUTO,
    AUTO_ORDER,
    BACKEND_NAMES,
    SPECS,
    Choice,
    build_runner,
    check_against_eager,
    relative_error,
    resolve_backend,
    start_runner,
)

__all__ = [
    "AUTO",
    "AUTO_ORDER",
    "BACKEND_NAMES",
    "SPECS",
    "BackendError",
    "BackendSpec",
    "BuildRequest",
    "Choice",
    "ExportCache",
    "Runner",
    "build_runner",
    "check_against_eager",
    "default_cache_dir",
    "relative_error",
    "resolve_backend",
    "start_runner",
    "weights_digest",
]
