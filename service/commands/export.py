"""``unirep export``: write a modality's served model (deploy form, the same weights and input shape ``unirep serve``
would use) as ONNX, OpenVINO IR or a TensorRT engine, for use outside the service.

The model is built from the same settings as ``unirep serve`` (flags, ``UNIREP_*``, ``--config``, ``--set``), and
the written file is loaded back and checked against the eager model before the command reports success.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

FORMATS = ("onnx", "openvino", "tensorrt")


def add_parser(subparsers: Any) -> None:
    export = subparsers.add_parser("export", help="write a served model as ONNX, OpenVINO IR or a TensorRT engine")
    export.add_argument("modality", help="image, audio, video, pointcloud or timeseries")
    export.add_argument("--format", dest="fmt", required=True, choices=FORMATS)
    export.add_argument(
        "-o", "--output", required=True, help="onnx: a .onnx file; openvino and tensorrt: a directory (created)"
    )
    export.add_argument("--config", default=None, help="TOML settings file (also $UNIREP_CONFIG)")
    export.add_argument("--device", default=None, help="tensorrt: the CUDA device to build for (default cuda:0)")
    export.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="any setting, as for serve"
    )
    export.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from service.commands.settings_args import one_line
    from service.settings import MODALITIES, ServiceSettings, parse_overrides

    if args.modality not in MODALITIES:
        print(f"unirep export: unknown modality {args.modality!r}; use one of {', '.join(MODALITIES)}", file=sys.stderr)
        return 2
    try:
        settings = ServiceSettings.load(args.config, **parse_overrides(args.overrides))
    except (ValueError, ValidationError, FileNotFoundError) as exc:
        print(f"unirep export: invalid settings: {one_line(exc)}", file=sys.stderr)
        return 2
    from service.runtime.backends import BackendError

    try:
        written, error = export(settings, args.modality, args.fmt, Path(args.output), args.device)
    except BackendError as exc:
        print(f"unirep export: {exc.message}", file=sys.stderr)
        return 1
    print(f"wrote {written} ({args.fmt}; relative error against the eager model {error:.1e})")
    return 0


def export(settings: Any, modality: str, fmt: str, output: Path, device: str | None) -> tuple[Path, float]:
    """Build the served model, write it in ``fmt`` at ``output``, load it back and check it; (path, error)."""
    import torch

    from modality_adapters import AdapterLimits, get_adapter
    from servable.build import build_served_model
    from service.runtime.backends import BackendError, BuildRequest, check_against_eager, weights_digest
    from service.runtime.backends.onnx_export import export_onnx
    from service.runtime.backends.onnxruntime_backend import OnnxRuntimeRunner
    from service.runtime.backends.openvino_backend import OpenVinoRunner, write_ir
    from service.runtime.backends.tensorrt_backend import TensorRtRunner, TensorRtSpec

    target = torch.device(device or ("cuda:0" if fmt == "tensorrt" else "cpu"))
    spec = TensorRtSpec()
    reason = spec.unavailable_reason(target.type) if fmt == "tensorrt" else None
    if reason is not None:
        raise BackendError(f"cannot build a TensorRT engine here: {reason}")
    cfg = settings.modality(modality)
    adapter = get_adapter(modality, AdapterLimits(max_bytes=settings.max_body_bytes))
    served = build_served_model(cfg, adapter, settings.random_seed)  # random weights are seeded as serve seeds them
    assert served.module is not None  # built here, not described by remote workers
    module = served.module.to(target)
    request = BuildRequest(
        module, served.input_shape, target, cfg.max_batch_size, settings.torch_threads, None, weights_digest(module)
    )
    runner: Any
    if fmt == "onnx":
        output.parent.mkdir(parents=True, exist_ok=True)
        runner = OnnxRuntimeRunner(export_onnx(module, served.input_shape, output), settings.torch_threads)
    elif fmt == "openvino":
        output.mkdir(parents=True, exist_ok=True)
        output = write_ir(module, served.input_shape, output)
        runner = OpenVinoRunner(output, settings.torch_threads)
    else:
        output.mkdir(parents=True, exist_ok=True)
        spec.write(request, output)
        output = output / "model.plan"
        runner = TensorRtRunner(output, target)
    return output, check_against_eager(runner, request)
