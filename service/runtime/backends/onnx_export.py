"""Export the deploy form to ONNX with a dynamic batch axis: the common source of the OpenVINO, ONNX Runtime and
TensorRT backends, and what ``unirep export --format onnx`` writes.

OpenVINO and ONNX Runtime import the very same graph, so it is exported once into its own export cache entry
(``cached_onnx``): ONNX Runtime loads that entry, OpenVINO converts it, and whichever is built second finds it there
rather than tracing the model again (the export is most of a backend's build time on a small CPU host).

The graph has one input (``input``, B x C x H x W) and two outputs (``features``, the pooled embedding, and
``logits``). It is traced from the straight transcription of the deploy forward rather than our eager fast
forward: the fast forward picks its kernels from the batch size at trace time (a batch-1 branch), which would bake
one batch size into a graph meant for all of them, while the compilers fuse the plain graph on their own.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from service.runtime.backends.base import BackendError, BuildRequest, FeaturesAndLogits
from service.runtime.backends.cache import ExportCache, entry_key

OPSET = 17
INPUT, OUTPUTS = "input", ("features", "logits")
ONNX_NAME = "model.onnx"


@contextlib.contextmanager
def straight_forward(module: nn.Module) -> Iterator[None]:
    """Temporarily run every block through the plain deploy forward (see the module docstring)."""
    blocks = [m for m in module.modules() if hasattr(m, "fast_forward")]
    saved = [m.fast_forward for m in blocks]
    for m in blocks:
        setattr(m, "fast_forward", False)  # noqa: B010
    try:
        yield
    finally:
        for m, value in zip(blocks, saved, strict=True):
            setattr(m, "fast_forward", value)  # noqa: B010


def export_onnx(module: nn.Module, input_shape: tuple[int, ...], path: Path, dynamic_batch: bool = True) -> Path:
    """Write ``module`` (deploy form, eval, on any device) as an ONNX file with weights inline; returns ``path``."""
    wrapper = FeaturesAndLogits(module).eval()
    device = next(iter(module.parameters())).device  # TensorRT exports the worker's CUDA copy
    example = torch.randn(2 if dynamic_batch else 1, *input_shape, device=device)
    axes = {name: {0: "batch"} for name in (INPUT, *OUTPUTS)} if dynamic_batch else None
    try:
        with straight_forward(module), torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # The TorchScript-based exporter: dynamic_axes gives a true dynamic batch without a symbolic trace,
            # and it needs no extra package.
            torch.onnx.export(
                wrapper,
                (example,),
                str(path),
                dynamo=False,
                input_names=[INPUT],
                output_names=list(OUTPUTS),
                dynamic_axes=axes,
                opset_version=OPSET,
                do_constant_folding=True,
            )
    except Exception as exc:
        raise BackendError(f"could not export the model to ONNX: {type(exc).__name__}: {exc}") from exc
    return path


def onnx_key(request: BuildRequest) -> str:
    """The shared export's cache key: what decides the graph (the exporter's version is in every key)."""
    return entry_key(
        backend="onnx", opset=OPSET, weights=request.weights_digest, shape=list(request.input_shape), dynamic=True
    )


def write_onnx(request: BuildRequest, directory: Path) -> None:
    """The shared export's content: ``model.onnx`` with a dynamic batch axis."""
    export_onnx(request.module, request.input_shape, directory / ONNX_NAME)


def cached_onnx(request: BuildRequest, cache: ExportCache) -> Path:
    """The request's ONNX graph from the export cache, exported first if no valid entry holds it."""
    what = f"onnx {'x'.join(map(str, request.input_shape))}"
    return cache.get_or_build(onnx_key(request), lambda d: write_onnx(request, d), what) / ONNX_NAME
