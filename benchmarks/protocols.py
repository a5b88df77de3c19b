"""The Open Inference Protocol (V2 REST) route against the native ``/classify`` route, same server, same model,
same run: a real ``unirep serve`` (image only, result cache off, random weights) driven by an async client.

Run: ``.venv/bin/python benchmarks/protocols.py`` (CPU, UniRepLKNet-A, 64-pixel inputs to keep the model's share
small so the protocol's own cost shows) or ``--input-size 224 --device cuda`` on a GPU host. Routes:

- ``native``: ``POST /classify/image?top_k=5`` with the JPEG as a multipart upload, JSON answer;
- ``v2-json``: ``POST /v2/models/image/infer``, the JPEG as a binary BYTES tensor, top-5 through the
  classification extension, JSON output;
- ``v2-binary``: the same request asking for the full ``PROBABILITIES`` tensor in binary form (what
  ``tritonclient`` does by default).

For each route: p50 latency at concurrency 1 (the overhead per request: its difference to ``native``) and req/s at
concurrency 16. Every request sends a distinct JPEG, so nothing is coalesced.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.service.server import running  # noqa: E402

N_FILES = 512


def jpegs(n: int) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def v2_request(data: bytes, binary_output: bool) -> tuple[bytes, dict[str, str]]:
    """A V2 infer body with the file as a binary BYTES tensor (as tritonclient builds it)."""
    blob = struct.pack("<I", len(data)) + data
    output = {"name": "PROBABILITIES", "parameters": {"binary_data": True} if binary_output else {"classification": 5}}
    header = {
        "inputs": [{"name": "FILE", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(blob)}}],
        "outputs": [output],
    }
    head = json.dumps(header).encode()
    return head + blob, {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}


async def one(client: httpx.AsyncClient, route: str, data: bytes) -> None:
    if route == "native":
        response = await client.post("/classify/image?top_k=5", files={"file": ("x.jpg", data)})
    else:
        body, headers = v2_request(data, binary_output=route == "v2-binary")
        response = await client.post("/v2/models/image/infer", content=body, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"{route}: {response.status_code} {response.text[:200]}")
    response.read()


async def level(url: str, route: str, files: list[bytes], concurrency: int, seconds: float) -> tuple[float, float]:
    """(p50 ms, req/s) of ``concurrency`` clients sending distinct files for ``seconds``."""
    latencies: list[float] = []
    counter = iter(range(10**9))
    end = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await one(client, route, files[0])  # connection and route warm

        async def loop() -> None:
            while time.perf_counter() < end:
                data = files[next(counter) % len(files)]
                t0 = time.perf_counter()
                await one(client, route, data)
                latencies.append((time.perf_counter() - t0) * 1000.0)

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return statistics.median(latencies), len(latencies) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = {
        "UNIREP_DEVICE": args.device,
        "UNIREP_CACHE_ENABLED": "false",
        "UNIREP_IMAGE__PARAMS": json.dumps({"input_size": args.input_size}),
        **{f"UNIREP_{m.upper()}__ENABLED": "false" for m in ("audio", "video", "pointcloud", "timeseries")},
    }
    files = jpegs(N_FILES)
    with tempfile.TemporaryDirectory() as tmp, running(Path(tmp), settings) as server:
        routes = ("native", "v2-json", "v2-binary")
        p50s: dict[str, list[float]] = {r: [] for r in routes}
        rpss: dict[str, list[float]] = {r: [] for r in routes}
        for rep in range(args.rounds):  # interleaved rounds, rotated, so drift on a shared host hits every route
            for route in routes[rep % 3 :] + routes[: rep % 3]:
                p50s[route].append(asyncio.run(level(server.url, route, files, 1, args.seconds))[0])
                rpss[route].append(asyncio.run(level(server.url, route, files, 16, args.seconds))[1])
        rows = [(r, statistics.median(p50s[r]), statistics.median(rpss[r])) for r in routes]
    native_p50, native_rps = rows[0][1], rows[0][2]
    print(
        f"image at {args.input_size} px on {args.device}, cache off, "
        f"median of {args.rounds} rounds of {args.seconds:.0f} s per level"
    )
    print("| route | p50 ms at c=1 | overhead vs native | req/s at c=16 | vs native |")
    print("|---|---|---|---|---|")
    for route, p50, rps in rows:
        print(f"| {route} | {p50:.1f} | {p50 - native_p50:+.1f} ms | {rps:.1f} | {rps / native_rps:.2f}x |")


if __name__ == "__main__":
    main()
