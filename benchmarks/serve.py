"""The HTTP path against the raw model: a real ``unirep serve`` driven by an async client.

Run: ``.venv/bin/python benchmarks/serve.py`` (CPU, UniRepLKNet-A at 224) or, on a GPU host,
``--model unireplknet_t --device cuda --concurrency 1,16,64,256``. It starts two servers (image only, cache off,
random weights, which are as fast as real ones): one with dynamic batching and one with ``max_batch_size=1`` as
the no-batching baseline. For each concurrency level and each input kind it sends distinct files for
``--seconds`` seconds and reports req/s, p50/p99 latency, the mean batch size the server formed (X-Batch-Size),
and the efficiency ratio: service img/s over the raw model's img/s at that batch size, measured in the same run
(same process kind, same device, server idle). Input kinds:

- ``jpeg``: 640 x 480 JPEG photos (decode, resize, crop in the preprocessing pool);
- ``presized``: 256 x 256 JPEGs, already at the resize target, so preprocessing is decode + crop only.

Batching gain = req/s at concurrency 16 with batching over req/s at concurrency 16 with max_batch_size=1.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.service.server import Server, running  # noqa: E402

N_FILES = 256


@dataclass
class Level:
    kind: str
    batching: bool
    concurrency: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    mean_batch: float
    server_inference_ms: float
    server_preprocess_ms: float
    server_overhead_ms: float
    """Median of total_ms - preprocess_ms - queue_ms - inference_ms from the response bodies: the gateway's own time."""
    raw_ips: float = 0.0
    efficiency: float = 0.0
    busy_ips: float = 0.0
    """Mean batch over the median X-Inference-Time-Ms: the model's rate inside the server, under the same load."""
    busy_efficiency: float = 0.0


def make_files(kind: str, n: int) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    w, h = (640, 480) if kind == "jpeg" else (256, 256)
    base = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    files = []
    for i in range(n):
        # smooth images (upsampled noise) compress like photos; each file differs so no cache could help
        img = Image.fromarray(np.roll(base, i, axis=1)).resize((w, h), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        files.append(buf.getvalue())
    return files


async def drive(url: str, files: list[bytes], concurrency: int, seconds: float) -> tuple[list[float], list[dict]]:
    latencies: list[float] = []
    bodies: list[dict] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    counter = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one_client() -> None:
            nonlocal counter, errors
            while time.perf_counter() < stop_at:
                data = files[counter % len(files)]
                counter += 1
                t0 = time.perf_counter()
                response = await client.post("/classify/image", files={"file": ("x.jpg", data, "image/jpeg")})
                latencies.append(time.perf_counter() - t0)
                if response.status_code == 200:
                    bodies.append(response.json())
                else:
                    errors += 1

        await asyncio.gather(*(one_client() for _ in range(concurrency)))
    bodies.append({"errors": errors})
    return latencies, bodies


def measure_level(server: Server, files: list[bytes], kind: str, batching: bool, c: int, seconds: float) -> Level:
    asyncio.run(drive(server.url, files, c, min(2.0, seconds / 3)))  # warm the connection pool and the path
    start = time.perf_counter()
    latencies, bodies = asyncio.run(drive(server.url, files, c, seconds))
    elapsed = time.perf_counter() - start
    errors = bodies.pop()["errors"]
    ok = [b for b in bodies if "timings" in b]
    lat = sorted(latencies)
    return Level(
        kind=kind,
        batching=batching,
        concurrency=c,
        requests=len(ok),
        errors=errors,
        seconds=round(elapsed, 2),
        rps=len(ok) / elapsed,
        p50_ms=1000 * lat[len(lat) // 2],
        p99_ms=1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        mean_batch=statistics.fmean(b["batch_size"] for b in ok) if ok else 0.0,
        server_inference_ms=statistics.median(b["timings"]["inference_ms"] for b in ok) if ok else 0.0,
        server_preprocess_ms=statistics.median(b["timings"]["preprocess_ms"] for b in ok) if ok else 0.0,
        server_overhead_ms=statistics.median(
            b["timings"]["total_ms"]
            - b["timings"]["preprocess_ms"]
            - b["timings"]["queue_ms"]
            - b["timings"]["inference_ms"]
            for b in ok
        )
        if ok
        else 0.0,
    )


def raw_throughput(model_name: str, device: str, sizes: list[int], rounds: int = 5, steps: int = 4) -> dict[int, float]:
    """img/s of the deploy-form model alone (no HTTP, no decode) at each batch size, as the worker runs it.

    Sizes are measured in interleaved rounds and the median step time is used, so that a noisy neighbour on a
    shared machine slows every size alike instead of whichever size it happened to overlap.
    """
    from models import load_model
    from service.runtime.device_worker import choose_precision

    dev = torch.device(device)
    model, _ = load_model(model_name, None, deploy=True, device=dev)
    precision = choose_precision(dev.type, "auto", dev.type == "cuda" and torch.cuda.is_bf16_supported())
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    inputs = {}
    for size in sorted(set(sizes)):
        x = torch.randn(size, 3, 224, 224, device=dev)
        inputs[size] = x.contiguous(memory_format=torch.channels_last) if precision.channels_last else x

    def step(x: torch.Tensor) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            if precision.autocast_dtype is not None:
                with torch.autocast(dev.type, dtype=precision.autocast_dtype):
                    model(x)
            else:
                model(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for x in inputs.values():
        step(x)
        step(x)
    times: dict[int, list[float]] = {size: [] for size in inputs}
    for _ in range(rounds):
        for size, x in inputs.items():
            times[size].extend(step(x) for _ in range(steps))
    return {size: size / statistics.median(ts) for size, ts in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="unireplknet_a")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--concurrency", default="1,4,16,64")
    parser.add_argument("--kinds", default="presized,jpeg")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--max-delay-ms", type=float, default=5.0)
    parser.add_argument("--preprocess-workers", type=int, default=None)
    parser.add_argument("--env", action="append", default=[], metavar="UNIREP_X=V", help="extra server settings")
    parser.add_argument("--json", default=None, help="write all figures here")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    kinds = args.kinds.split(",")
    base = {
        "UNIREP_LOG_LEVEL": "warning",
        "UNIREP_DEVICE": args.device,
        "UNIREP_CACHE_ENABLED": "false",
        "UNIREP_IMAGE__MODEL": args.model,
        "UNIREP_IMAGE__PARAMS": json.dumps({"input_size": 224}),
        "UNIREP_IMAGE__MAX_DELAY_MS": str(args.max_delay_ms),
        "UNIREP_IMAGE__MAX_QUEUE_SIZE": "4096",
        "UNIREP_DEFAULT_TIMEOUT_MS": "600000",
        **{f"UNIREP_{m}__ENABLED": "false" for m in ("AUDIO", "VIDEO", "POINTCLOUD", "TIMESERIES")},
    }
    base.update(dict(pair.split("=", 1) for pair in args.env))
    if args.preprocess_workers:
        base["UNIREP_PREPROCESS_WORKERS"] = str(args.preprocess_workers)
    files = {kind: make_files(kind, N_FILES) for kind in kinds}
    results: list[Level] = []
    workdir = Path(tempfile.mkdtemp(prefix="unirep-bench-"))
    for batching in (True, False):
        settings = {**base, "UNIREP_IMAGE__MAX_BATCH_SIZE": str(args.max_batch_size if batching else 1)}
        with running(workdir, settings) as server:
            for kind in kinds:
                for c in levels if batching else [c for c in levels if c == 16] or levels[-1:]:
                    level = measure_level(server, files[kind], kind, batching, c, args.seconds)
                    results.append(level)
                    print(
                        f"  {kind:<9} batching={batching!s:<5} c={c:<3} {level.rps:7.1f} req/s  "
                        f"p50 {level.p50_ms:7.1f} ms  p99 {level.p99_ms:7.1f} ms  batch {level.mean_batch:4.1f}",
                        flush=True,
                    )
    sizes = sorted({max(1, round(r.mean_batch)) for r in results} | {1, args.max_batch_size})
    raw = raw_throughput(args.model, args.device, sizes)
    for r in results:
        r.raw_ips = raw[max(1, round(r.mean_batch))]
        r.efficiency = r.rps / r.raw_ips if r.raw_ips else 0.0
        r.busy_ips = r.mean_batch * 1000.0 / r.server_inference_ms if r.server_inference_ms else 0.0
        r.busy_efficiency = r.rps / r.busy_ips if r.busy_ips else 0.0
    print_report(args, results, raw)
    if args.json:
        Path(args.json).write_text(json.dumps({"raw": raw, "levels": [asdict(r) for r in results]}, indent=2))
    return 0


def print_report(args: argparse.Namespace, results: list[Level], raw: dict[int, float]) -> None:
    print(f"\nmodel {args.model} on {args.device}, torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}")
    print("raw model img/s by batch size: " + ", ".join(f"bs{k}={v:.1f}" for k, v in raw.items()))
    print(
        "\n| input | batching | concurrency | req/s | p50 ms | p99 ms | mean batch | raw img/s at that batch "
        "| efficiency | in-server model img/s | efficiency (in-server) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.kind} | {'yes' if r.batching else 'no (bs 1)'} | {r.concurrency} | {r.rps:.1f} | {r.p50_ms:.1f} | "
            f"{r.p99_ms:.1f} | {r.mean_batch:.2f} | {r.raw_ips:.1f} | {r.efficiency:.2f} | {r.busy_ips:.1f} | "
            f"{r.busy_efficiency:.2f} |"
        )
    for kind in sorted({r.kind for r in results}):
        c1 = next((r for r in results if r.kind == kind and r.batching and r.concurrency == 1), None)
        if c1 is not None:
            overhead = c1.p50_ms - c1.server_inference_ms - c1.server_preprocess_ms
            print(
                f"{kind}: concurrency 1: p50 {c1.p50_ms:.1f} ms = model {c1.server_inference_ms:.1f} ms (X-Inference-"
                f"Time-Ms; raw model alone {1000.0 / raw[1]:.1f} ms) + decode {c1.server_preprocess_ms:.1f} ms + "
                f"{overhead:.1f} ms other, of which {c1.server_overhead_ms:.2f} ms in the gateway (body, batcher, "
                "JSON) and the rest HTTP and the client"
            )
        on = next((r for r in results if r.kind == kind and r.batching and r.concurrency == 16), None)
        off = next((r for r in results if r.kind == kind and not r.batching and r.concurrency == 16), None)
        if on and off and off.rps:
            print(f"{kind}: batching gain at concurrency 16: {on.rps:.1f} / {off.rps:.1f} = {on.rps / off.rps:.2f}x")


if __name__ == "__main__":
    raise SystemExit(main())
