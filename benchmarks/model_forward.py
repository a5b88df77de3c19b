"""Raw model throughput: train form vs deploy form, and our fast deploy forward vs the official transcription.

Run: ``.venv/bin/python benchmarks/model_forward.py`` (CPU defaults) or
``--device cuda --dtypes bf16,fp16 --batches 1,32,128`` on a GPU. ``--backends openvino,onnxruntime`` (CPU) or
``--backends tensorrt,cudagraphs`` (CUDA) adds the service's inference backends, each built from the deploy form
exactly as a worker builds it (``service.runtime.backends``) and measured in the same rounds as the eager forms.
All configurations of one variant are measured in interleaved rounds within one run, so the printed ratios compare
like with like on a noisy machine; the load average before and after is printed with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from models import create_model

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Case:
    form: str  # "train", "deploy-official", "deploy-fast", "deploy-compiled", or "backend:<name>"
    memory_format: str  # "contiguous" or "channels_last"
    dtype: str
    batch: int

    @property
    def label(self) -> str:
        return f"{self.form:<16} {self.memory_format:<13} {self.dtype:<5} bs={self.batch:<4}"


def build_backend(variant: str, name: str, device: torch.device, dtype: str, max_batch: int, threads: int) -> Any:
    """A service backend's runner over the deploy form, as the worker builds it (checked against eager)."""
    from service.runtime.backends import BuildRequest, ExportCache, build_runner, weights_digest
    from service.runtime.devices import choose_precision

    model = create_model(variant).eval()
    model.reparameterize()
    model = model.to(device)
    precision = choose_precision(device.type, dtype)
    request = BuildRequest(
        model,
        (3, ARGS_SIZE[0], ARGS_SIZE[0]),
        device,
        max_batch,
        threads or None,
        None,
        weights_digest(model),
        precision.autocast_dtype,
        precision.channels_last,
    )
    runner, _ = build_runner(name, request, ExportCache(None))
    return runner.run


ARGS_SIZE = [224]


def build(variant: str, form: str, device: torch.device, dtype: torch.dtype, memory_format: str) -> Any:
    model = create_model(variant).eval()
    if form != "train":
        model.reparameterize()
        model.set_fast_forward(form != "deploy-official")
    model = model.to(device=device, dtype=dtype)
    if memory_format == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    if form == "deploy-compiled":
        # Inductor fuses the elementwise tail of each block (GELU, GRN, residual) into generated C++/Triton loops.
        return torch.compile(model)
    return model


def timer(device: torch.device) -> Callable[[], float]:
    if device.type != "cuda":
        return time.perf_counter
    torch.cuda.synchronize()

    def synchronized_clock() -> float:
        torch.cuda.synchronize()  # the GPU's queued work counts towards the time read
        return time.perf_counter()

    return synchronized_clock


def measure(model: Any, x: torch.Tensor, min_seconds: float, device: torch.device) -> float:
    """Images per second over at least ``min_seconds`` (and at least 3 forwards)."""
    clock = timer(device)
    with torch.inference_mode():
        start = clock()
        cpu_start = time.process_time()
        iterations = 0
        while iterations < 3 or clock() - start < min_seconds:
            model(x)
            iterations += 1
        elapsed = clock() - start
    CPU_RATES.setdefault(id(model), []).append(iterations * x.shape[0] / max(1e-9, time.process_time() - cpu_start))
    return iterations * x.shape[0] / elapsed


CPU_RATES: dict[int, list[float]] = {}
"""Images per CPU-second of this process (all its threads), per model: on a shared machine the wall-clock rate
follows whatever share of the cores the neighbours leave, while work per image does not."""


def run_variant(args: argparse.Namespace, variant: str, device: torch.device) -> dict[Case, float]:
    forms = args.forms + (["deploy-compiled"] if args.compile else [])
    cases = [
        Case(form, fmt, dtype, batch)
        for dtype in args.dtypes
        for batch in args.batches
        for fmt in args.formats
        for form in forms
    ]
    # Backends take fp32 input in the layout they were exported for and apply the precision themselves.
    cases += [
        Case(f"backend:{name}", "contiguous", dtype, batch)
        for dtype in args.dtypes
        for batch in args.batches
        for name in args.backends
    ]
    models: dict[tuple[str, str, str], Any] = {}
    for case in cases:
        key = (case.form, case.memory_format, case.dtype)
        if key in models:
            continue
        if case.form.startswith("backend:"):
            name = case.form.split(":", 1)[1]
            models[key] = build_backend(variant, name, device, case.dtype, max(args.batches), args.threads)
        else:
            models[key] = build(variant, case.form, device, DTYPES[case.dtype], case.memory_format)
    samples: dict[Case, list[float]] = {case: [] for case in cases}
    cpu_samples: dict[Case, list[float]] = {case: [] for case in cases}
    size = args.size
    for case in cases:  # warm-up: allocator, oneDNN/cuDNN algorithm choice
        x = make_input(case, size, device)
        measure(models[(case.form, case.memory_format, case.dtype)], x, 0.0, device)
    for _ in range(args.rounds):
        for case in cases:
            x = make_input(case, size, device)
            model = models[(case.form, case.memory_format, case.dtype)]
            samples[case].append(measure(model, x, args.seconds, device))
            cpu_samples[case].append(CPU_RATES[id(model)][-1])
    for case, values in cpu_samples.items():
        CPU_MEDIANS[case] = statistics.median(values)
    return {case: statistics.median(values) for case, values in samples.items()}


CPU_MEDIANS: dict[Case, float] = {}


def make_input(case: Case, size: int, device: torch.device) -> torch.Tensor:
    dtype = torch.float32 if case.form.startswith("backend:") else DTYPES[case.dtype]
    x = torch.randn(case.batch, 3, size, size, device=device, dtype=dtype)
    if case.memory_format == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def best(results: dict[Case, float], form: str, like: Case) -> float:
    """The fastest layout of ``form`` at ``like``'s batch and dtype (backends run their own layout)."""
    rates = [r for c, r in results.items() if c.form == form and c.batch == like.batch and c.dtype == like.dtype]
    return max(rates, default=float("nan"))


def report(variant: str, results: dict[Case, float]) -> None:
    print(f"\n## {variant}")
    print(f"{'form':<16} {'layout':<13} {'dtype':<5} {'batch':<7} {'img/s':>10}  vs train  vs official deploy")
    for case, rate in results.items():
        train = best(results, "train", case)
        official = best(results, "deploy-official", case)
        print(f"{case.label} {rate:>10.1f}  {rate / train:>7.2f}x  {rate / official:>7.2f}x")
    best_official = max((r for c, r in results.items() if c.form == "deploy-official"), default=float("nan"))
    for form in ("deploy-fast", "deploy-compiled"):
        rates = [r for c, r in results.items() if c.form == form]
        if rates:
            print(f"best {form} / best deploy-official: {max(rates) / best_official:.2f}x")
    for case, rate in results.items():
        if case.form.startswith("backend:"):
            eager = best(results, "deploy-fast", case)
            cpu, cpu_eager = CPU_MEDIANS[case], best(CPU_MEDIANS, "deploy-fast", case)
            print(
                f"{case.form} bs={case.batch}: {rate:.1f} img/s = {rate / eager:.2f}x the best eager deploy-fast; "
                f"per CPU-second {cpu:.1f} img = {cpu / cpu_eager:.2f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", default="unireplknet_a,unireplknet_t")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtypes", default="fp32")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--formats", default="contiguous,channels_last")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum seconds per measurement")
    parser.add_argument("--compile", action="store_true", help="add torch.compile of the deploy form (slow start)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave the default)")
    parser.add_argument("--forms", default="train,deploy-official,deploy-fast", help="eager forms to measure")
    parser.add_argument("--backends", default="", help="service backends to add: openvino,onnxruntime,tensorrt,...")
    args = parser.parse_args()
    args.dtypes = args.dtypes.split(",")
    args.batches = [int(b) for b in args.batches.split(",")]
    args.formats = args.formats.split(",")
    args.backends = [b for b in args.backends.split(",") if b]
    args.forms = [f for f in args.forms.split(",") if f]
    ARGS_SIZE[0] = args.size
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# model_forward: torch {torch.__version__}, {name}, input {args.size}x{args.size}")
    print(f"# load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    for variant in args.variants.split(","):
        report(variant, run_variant(args, variant, device))
    print(f"# load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
