"""The backends by name, the ``auto`` choice, and building a checked runner for one served model on one device.

``auto`` measures: every backend of the device's candidate list (CPU: OpenVINO, ONNX Runtime, eager torch; CUDA:
TensorRT, torch replayed from CUDA graphs, eager torch) that is installed is built, checked and timed on the
model, and the fastest serves; the choice is remembered per host and model (``auto_choice``). A service starts
with ``start_runner``: the remembered choice, or the first preferred candidate while the others are measured in
the background. An explicitly requested backend that cannot run is an error at start, never a silent fallback.

Every runner other than eager torch is compared with the eager deploy form on a fixed input before it serves
(``check_against_eager``): past the tolerance an explicitly requested backend fails the start loudly, naming the
backend and the error, and ``auto`` skips it with that reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from service.runtime.backends.auto_choice import AutoStart, choose_auto, start_auto
from service.runtime.backends.base import BackendError, BackendSpec, BuildRequest, Runner
from service.runtime.backends.cache import ExportCache
from service.runtime.backends.exported import ExportedSpec
from service.runtime.backends.onnxruntime_backend import OnnxRuntimeSpec
from service.runtime.backends.openvino_backend import OpenVinoSpec
from service.runtime.backends.tensorrt_backend import TensorRtSpec
from service.runtime.backends.torch_backend import CudaGraphSpec, TorchRunner, TorchSpec

log = logging.getLogger(__name__)

AUTO = "auto"
SPECS: dict[str, BackendSpec] = {
    spec.name: spec for spec in (TorchSpec(), CudaGraphSpec(), OpenVinoSpec(), OnnxRuntimeSpec(), TensorRtSpec())
}
BACKEND_NAMES: tuple[str, ...] = (AUTO, *SPECS)
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    # the candidates ``auto`` measures per device; on a tie, the earlier wins
    "cpu": ("openvino", "onnxruntime", "torch"),
    "cuda": ("tensorrt", "cudagraphs", "torch"),
}
SERVES_COLD = "torch"
"""What ``auto`` serves on a start with no remembered choice while the others are measured in the background:
eager has no export or conversion to wait for (OpenVINO's costs ~5 s per model on two cores)."""
FP32_TOLERANCE = 1e-4
"""Largest relative difference (max |backend - eager| / max |eager|) of features and logits in fp32."""
REDUCED_TOLERANCE = 3e-2
"""The same in fp16/bf16, where the eager reference is fp32 and the backend rounds differently."""
CHECK_BATCH = 2


@dataclass(frozen=True)
class Choice:
    name: str
    reason: str
    """Why this backend: "requested", or for auto which ones were skipped and why."""


def resolve_backend(requested: str, device_type: str, specs: dict[str, BackendSpec] | None = None) -> Choice:
    """The backend to build for an explicit ``requested`` name on ``device_type``; raises when it cannot run.
    For ``auto`` the name is decided by measuring (``build_runner``): here only that it is ``auto``."""
    specs = SPECS if specs is None else specs
    requested = requested.strip().lower()
    if requested == AUTO:
        return Choice(AUTO, f"auto on {device_type}: measured at load")
    spec = specs.get(requested)
    if spec is None:
        raise BackendError(f"unknown backend {requested!r}; use one of {', '.join(BACKEND_NAMES)}")
    reason = spec.unavailable_reason(device_type)
    if reason is not None:
        raise BackendError(f"backend {requested!r} cannot run on {device_type}: {reason}")
    return Choice(requested, "requested")


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    scale = float(reference.abs().max().clamp_min(1e-12))
    return float((value.float().cpu() - reference.float().cpu()).abs().max()) / scale


def check_against_eager(runner: Runner, request: BuildRequest) -> float:
    """Run a fixed input through ``runner`` and the eager fp32 deploy form; raise past the tolerance."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((CHECK_BATCH, *request.input_shape), generator=generator)
    reference = TorchRunner(BuildRequest(**{**request.__dict__, "device": torch.device("cpu"), "autocast_dtype": None}))
    ref_features, ref_logits = reference.run(x)
    features, logits = runner.run(x)
    error = max(relative_error(features, ref_features), relative_error(logits, ref_logits))
    tolerance = FP32_TOLERANCE if request.autocast_dtype is None else REDUCED_TOLERANCE
    if not error <= tolerance:
        raise BackendError(
            f"backend {runner.name} disagrees with the eager deploy form: relative error {error:.2e} "
            f"exceeds {tolerance:.0e}; refusing to serve it"
        )
    return error


def build_runner(
    requested: str, request: BuildRequest, cache: ExportCache, remeasure: bool = False
) -> tuple[Runner, Choice]:
    """Resolve, build (through the export cache), prepare every batch size, and check against eager; for
    ``auto``, the candidate measured fastest (or remembered so; ``remeasure``: measure even so)."""
    choice = resolve_backend(requested, request.device.type)
    if choice.name == AUTO:
        candidates = AUTO_ORDER.get(request.device.type, ("torch",))
        runner, name, note = choose_auto(
            request, cache.root, candidates, SPECS, lambda n: build_checked(n, request, cache), remeasure
        )
        return runner, Choice(name, note)
    return build_checked(choice.name, request, cache), choice


def start_runner(requested: str, request: BuildRequest, cache: ExportCache, remeasure: bool = False) -> AutoStart:
    """What a service serves at once: for ``auto`` without a remembered choice (or with ``remeasure``), a runner
    whose ``pending`` candidates are still to be measured; otherwise as ``build_runner``, with nothing pending."""
    choice = resolve_backend(requested, request.device.type)
    if choice.name != AUTO:
        return AutoStart(build_checked(choice.name, request, cache), choice.name, choice.reason, None)
    candidates = AUTO_ORDER.get(request.device.type, ("torch",))
    return start_auto(
        request,
        cache.root,
        candidates,
        SPECS,
        lambda n: build_checked(n, request, cache),
        remeasure,
        serve_cold=SERVES_COLD,
    )


def build_checked(name: str, request: BuildRequest, cache: ExportCache) -> Runner:
    """One backend's runner, built and checked. A runner that fails the check is never served. When it came from
    the export cache, the entry is moved aside and exported once more (a stale or damaged graph); a second
    failure, or a fresh export that fails, raises with the reason."""
    spec = SPECS[name]
    for attempt in (1, 2):
        hits = cache.hits
        runner = _build(spec, name, request, cache)
        if name == "torch":
            return runner
        try:
            error = _check(runner, request)
        except BackendError as exc:
            if isinstance(spec, ExportedSpec):
                spec.reject(request, cache, exc.message)
            if attempt == 2 or cache.hits == hits:
                raise
            log.warning("cached %s graph rejected (%s): exporting it again", name, exc.message)
            continue
        log.info("backend %s matches the eager deploy form (relative error %.1e)", name, error)
        return runner
    raise AssertionError("unreachable")


def _check(runner: Runner, request: BuildRequest) -> float:
    try:
        return check_against_eager(runner, request)
    except BackendError:
        raise
    except Exception as exc:  # a graph for another shape, say: as much a failed check as a wrong answer
        raise BackendError(f"backend {runner.name} fails on the check input: {type(exc).__name__}: {exc}") from exc


def _build(spec: BackendSpec, name: str, request: BuildRequest, cache: ExportCache) -> Runner:
    try:
        runner = spec.build(request, cache)
        if not runner.dynamic_batch:
            runner.prepare(range(1, request.max_batch_size + 1))
    except BackendError:
        raise
    except Exception as exc:
        raise BackendError(f"backend {name} could not be built: {type(exc).__name__}: {exc}") from exc
    return runner
