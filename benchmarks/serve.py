"""The HTTP path, backend against backend: real ``unirep serve`` processes driven by an async client.

Run: ``.venv/bin/python benchmarks/serve.py --baseline-root ../main`` (CPU, UniRepLKNet-A at 224). It starts one
server per backend of this tree (``--backends torch,openvino,onnxruntime``; image only, cache off, random weights,
which are as fast as real ones) and, with ``--baseline-root``, one more from another checkout as it ships (today's
path), all at once; then it measures every server at every concurrency level in turns, for ``--rounds`` rounds, so
that a noisy neighbour slows all of them alike. Per level: req/s, p50/p99 latency, and the mean batch the server
formed (X-Batch-Size); medians over the rounds, with the load average seen during the run. Input kinds:

- ``presized``: 256 x 256 JPEGs, already at the resize target, so preprocessing is decode + crop only;
- ``jpeg``: 640 x 480 JPEG photos (decode, resize, crop in the preprocessing pool).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.service.server import Server, free_port, stop  # noqa: E402

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
    cpu_ms_per_request: float = 0.0
    """CPU time of the whole server process tree (gateway, decoders, model threads) per answered request: unlike
    req/s it does not depend on the share of the cores that other jobs on a shared machine leave."""


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live children (the decoder processes)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


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
    cpu_start = tree_cpu_seconds(server.process.pid)
    latencies, bodies = asyncio.run(drive(server.url, files, c, seconds))
    elapsed = time.perf_counter() - start
    cpu_used = tree_cpu_seconds(server.process.pid) - cpu_start
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
        cpu_ms_per_request=1000.0 * cpu_used / max(1, len(ok)),
    )


@dataclass(frozen=True)
class Config:
    """One server of the comparison: a backend of this tree, or today's path from another checkout."""

    label: str
    env: dict[str, str]
    python: str = sys.executable
    root: Path = ROOT


def start_server(workdir: Path, config: Config, base: dict[str, str]) -> Server:
    """``unirep serve`` from ``config.root`` with ``config.python`` (the baseline runs another checkout's code)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNIREP_")}
    env.update({**base, **config.env, "HF_HUB_OFFLINE": "1", "UNIREP_HOST": "127.0.0.1", "UNIREP_PORT": str(port)})
    log = workdir / f"{config.label}-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [config.python, "-m", "service.cli", "serve"],
            cwd=config.root,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{config.label} exited:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(server)
    raise RuntimeError(f"{config.label} was not ready in time:\n{server.log_tail()}")


def configs(args: argparse.Namespace) -> list[Config]:
    out = []
    if args.baseline_root:
        root = Path(args.baseline_root).resolve()
        python = str(root / ".venv" / "bin" / "python") if (root / ".venv").exists() else sys.executable
        # Today's path as that checkout ships it: eager torch, its own thread and decoder defaults.
        out.append(Config("baseline-torch", {"UNIREP_PREPROCESS_WORKERS": str(args.baseline_workers)}, python, root))
    for backend in args.backends.split(","):
        out.append(Config(backend, {"UNIREP_IMAGE__BACKEND": backend}))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="unireplknet_a")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--kinds", default="presized")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds over every server and level")
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--max-delay-ms", type=float, default=5.0)
    parser.add_argument("--backends", default="torch,openvino,onnxruntime", help="this tree's servers, one each")
    parser.add_argument("--baseline-root", default=None, help="another checkout (e.g. main) served as the baseline")
    parser.add_argument("--baseline-workers", type=int, default=2, help="the baseline's decoder processes")
    parser.add_argument("--env", action="append", default=[], metavar="UNIREP_X=V", help="extra server settings")
    parser.add_argument("--json", default=None, help="write all figures here")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    kinds = args.kinds.split(",")
    base = {
        "UNIREP_LOG_LEVEL": "info",
        "UNIREP_DEVICE": args.device,
        "UNIREP_CACHE_ENABLED": "false",
        "UNIREP_IMAGE__MODEL": args.model,
        "UNIREP_IMAGE__PARAMS": json.dumps({"input_size": 224}),
        "UNIREP_IMAGE__MAX_BATCH_SIZE": str(args.max_batch_size),
        "UNIREP_IMAGE__MAX_DELAY_MS": str(args.max_delay_ms),
        "UNIREP_IMAGE__MAX_QUEUE_SIZE": "4096",
        "UNIREP_DEFAULT_TIMEOUT_MS": "600000",
        **{f"UNIREP_{m}__ENABLED": "false" for m in ("AUDIO", "VIDEO", "POINTCLOUD", "TIMESERIES")},
    }
    base.update(dict(pair.split("=", 1) for pair in args.env))
    files = {kind: make_files(kind, N_FILES) for kind in kinds}
    workdir = Path(tempfile.mkdtemp(prefix="unirep-bench-"))
    servers: dict[str, Server] = {}
    samples: dict[tuple[str, str, int], list[Level]] = {}
    load: list[float] = []
    try:
        for config in configs(args):  # all up at once (idle servers cost nothing), then measured in turns
            servers[config.label] = start_server(workdir, config, base)
            print(f"started {config.label}", flush=True)
        for rnd in range(args.rounds):
            for kind in kinds:
                for c in levels:
                    for label, server in servers.items():
                        level = measure_level(server, files[kind], kind, True, c, args.seconds)
                        load.append(os.getloadavg()[0])
                        samples.setdefault((label, kind, c), []).append(level)
                        print(
                            f"  round {rnd} {label:<15} {kind:<9} c={c:<3} {level.rps:7.1f} req/s  p50 "
                            f"{level.p50_ms:7.1f} ms  p99 {level.p99_ms:7.1f} ms  batch {level.mean_batch:4.1f}  "
                            f"cpu/req {level.cpu_ms_per_request:6.1f} ms  load {load[-1]:.1f}",
                            flush=True,
                        )
    finally:
        for server in servers.values():
            stop(server)
    print_report(args, samples, load)
    if args.json:
        out = {f"{k[0]}/{k[1]}/c{k[2]}": [asdict(v) for v in vs] for k, vs in samples.items()}
        Path(args.json).write_text(json.dumps({"load": load, "levels": out}, indent=2))
    return 0


def print_report(args: argparse.Namespace, samples: dict[tuple[str, str, int], list[Level]], load: list[float]) -> None:
    print(f"\nmodel {args.model} on {args.device}, cpu count {os.cpu_count()}, max_batch_size {args.max_batch_size}")
    print(f"load average (1 min) during the run: min {min(load):.1f}, median {statistics.median(load):.1f}")
    print(
        "\n| server | input | concurrency | req/s | p50 ms | p99 ms | mean batch | req/s vs first server "
        "| server CPU ms per request | CPU per request vs first server |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    first = next(iter(samples))[0]
    for (label, kind, c), levels in samples.items():
        rps = statistics.median(lv.rps for lv in levels)
        ref = statistics.median(lv.rps for lv in samples[(first, kind, c)])
        cpu = statistics.median(lv.cpu_ms_per_request for lv in levels)
        ref_cpu = statistics.median(lv.cpu_ms_per_request for lv in samples[(first, kind, c)])
        print(
            f"| {label} | {kind} | {c} | {rps:.1f} | {statistics.median(lv.p50_ms for lv in levels):.1f} | "
            f"{statistics.median(lv.p99_ms for lv in levels):.1f} | "
            f"{statistics.median(lv.mean_batch for lv in levels):.2f} | {rps / ref:.2f}x | {cpu:.1f} | "
            f"{cpu / ref_cpu:.2f}x |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
