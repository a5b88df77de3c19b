"""Scale-out throughput: one ``unirep gateway`` with 1, then 2, ``unirep worker`` processes over a real Redis.

Run: ``.venv/bin/python benchmarks/scaleout.py`` (CPU, UniRepLKNet-A, image at ``--size``). It starts a
``redis-server`` on a free port, one gateway (image only, cache off, fixed weights from a file so both workers
compute the same model), and the workers; each worker is one process with ``--torch-threads`` intra-op threads.
For each worker count it sends distinct pre-sized JPEGs at ``--concurrency`` for ``--seconds`` seconds (after a
warm-up second) and reports req/s, p50/p99 latency and the mean batch size, then the 2-worker / 1-worker ratio.

On one machine the workers share its cores with the gateway's decoders and Redis, so the ratio measures how well
the Streams transport spreads batches, bounded by the cores; on separate hosts each worker brings its own device.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.redis.helpers import Proc, RedisServer, launch, stop, wait_ready, write_checkpoints  # noqa: E402


def jpegs(count: int, size: int) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out


async def load(url: str, files: list[bytes], concurrency: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    batches: list[int] = []
    errors = 0
    counter = 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one() -> None:
            nonlocal counter, errors
            counter += 1
            data = files[counter % len(files)]
            started = time.perf_counter()
            response = await client.post("/classify/image", content=data, headers={"Content-Type": "image/jpeg"})
            if response.status_code != 200:
                errors += 1
                return
            latencies.append(time.perf_counter() - started)
            batches.append(int(response.headers.get("X-Batch-Size", "1")))

        async def runner(until: float) -> None:
            while time.perf_counter() < until:
                await one()

        warm_until = time.perf_counter() + 1.0
        await asyncio.gather(*(runner(warm_until) for _ in range(concurrency)))
        latencies.clear()
        batches.clear()
        started = time.perf_counter()
        await asyncio.gather(*(runner(started + seconds) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies) or [0.0]
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
        "mean_batch": statistics.fmean(batches) if batches else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="image input size (the model's)")
    parser.add_argument("--model", default="unireplknet_a")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--torch-threads", type=int, default=1, help="intra-op threads per worker")
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--workers", default="1,2", help="worker counts to measure")
    parser.add_argument("--json", action="store_true", help="print one JSON line per level")
    args = parser.parse_args()

    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="unirep-scaleout-"))
    redis_server = RedisServer(workdir)
    redis_server.start()
    settings = {
        "UNIREP_AUDIO__ENABLED": "false",
        "UNIREP_VIDEO__ENABLED": "false",
        "UNIREP_POINTCLOUD__ENABLED": "false",
        "UNIREP_TIMESERIES__ENABLED": "false",
        "UNIREP_IMAGE__MODEL": args.model,
        "UNIREP_IMAGE__PARAMS": json.dumps({"input_size": args.size}),
        "UNIREP_IMAGE__MAX_BATCH_SIZE": str(args.max_batch_size),
        "UNIREP_CACHE_ENABLED": "false",
        "UNIREP_WARMUP": "true",
        "UNIREP_PREPROCESS_WORKERS": "2",
        "UNIREP_TORCH_THREADS": str(args.torch_threads),
        "UNIREP_LOG_LEVEL": "warning",
    }
    settings.update(write_checkpoints(workdir, settings, ("image",)))
    settings["UNIREP_REDIS_URL"] = redis_server.url
    files = jpegs(64, int(args.size / 0.875))
    results: dict[int, dict[str, float]] = {}
    gateway = launch("gateway", workdir, settings)
    workers: list[Proc] = []
    try:
        for count in (int(c) for c in args.workers.split(",")):
            while len(workers) < count:
                workers.append(launch("worker", workdir, settings))
            wait_ready(*workers, gateway)
            time.sleep(1.0)  # every gateway sees every worker (heartbeats)
            results[count] = asyncio.run(load(gateway.url, files, args.concurrency, args.seconds))
            row = results[count]
            if args.json:
                print(json.dumps({"workers": count, **row}))
            else:
                print(
                    f"workers={count}  {row['rps']:7.1f} req/s  p50 {row['p50_ms']:6.1f} ms  "
                    f"p99 {row['p99_ms']:6.1f} ms  mean batch {row['mean_batch']:4.1f}  errors {row['errors']:.0f}"
                )
    finally:
        for proc in [gateway, *workers]:
            stop(proc)
        redis_server.stop()
    if 1 in results and 2 in results and results[1]["rps"]:
        print(f"ratio 2 workers / 1 worker: {results[2]['rps'] / results[1]['rps']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
