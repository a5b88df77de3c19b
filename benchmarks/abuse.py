"""What hostile clients cost their neighbours, measured against a real ``unirep serve`` in one run.

Run: ``.venv/bin/python benchmarks/abuse.py [--seconds 20]``. One server (image only, cache off, random weights,
128 px input, 2 decoders, crash fault injection on). Phases, each ``--seconds`` long, interleaved with baselines
so that a shared machine's drift shows up instead of being mistaken for an effect:

- ``alone``: 4 neighbour connections (from 127.0.0.2) send distinct 640 x 480 JPEGs back to back;
- ``crash``: the same, while 4 attackers (each from its own loopback address) send inputs that kill their decoder
  with SIGSEGV, every one different (the test hook ``UNIREP-FAULT:crash`` plus a counter: the same signal a
  crafted AVI causes in native code, without depending on one library version's bug);
- ``large``: the same, while 2 attackers send a 7000 x 7000 all-zero PNG (49 Mpx, within the 50 Mpx limit;
  about 200 KB on the wire, over a second of decoding and ~200 MB of memory each).

Neighbour throughput under an attack is reported as a ratio to the mean of the baselines around it (goal >=
0.70). Then gateway memory: RSS of the server process while 200 connections each send 4 MiB of a request head
that never ends (goal: growth < 50 MB), sampled every 20 ms, peak reported.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.service.server import Server, running  # noqa: E402

SETTINGS = {
    "UNIREP_AUDIO__ENABLED": "false",
    "UNIREP_VIDEO__ENABLED": "false",
    "UNIREP_POINTCLOUD__ENABLED": "false",
    "UNIREP_TIMESERIES__ENABLED": "false",
    "UNIREP_IMAGE__PARAMS": json.dumps({"input_size": 128}),
    "UNIREP_CACHE_ENABLED": "false",
    "UNIREP_WARMUP": "false",
    "UNIREP_PREPROCESS_WORKERS": "2",
    "UNIREP_TORCH_THREADS": "1",
    "UNIREP_DEBUG_FAULT_INJECTION": "true",
    "UNIREP_LOG_LEVEL": "warning",
}


def jpegs(count: int) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def zero_png(side: int = 7000) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (side, side)).save(buf, format="PNG")
    return buf.getvalue()


async def neighbours(url: str, files: list[bytes], seconds: float, stop: asyncio.Event) -> tuple[int, Counter[int]]:
    """4 back-to-back loops from 127.0.0.2; returns (successes, statuses)."""
    statuses: Counter[int] = Counter()
    end = time.monotonic() + seconds
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=url, timeout=60, transport=transport) as client:

        async def loop(offset: int) -> None:
            i = offset
            while time.monotonic() < end:
                response = await client.post("/classify/image", files={"file": ("x.jpg", files[i % len(files)])})
                statuses[response.status_code] += 1
                i += 4

        await asyncio.gather(*(loop(k) for k in range(4)))
    stop.set()
    return statuses[200], statuses


async def attacker(url: str, address: str, payload: bytes, stop: asyncio.Event, unique: bool) -> Counter[int]:
    statuses: Counter[int] = Counter()
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=url, timeout=120, transport=transport) as client:
        n = 0
        while not stop.is_set():
            body = payload + (b"\n%s-%d" % (address.encode(), n) if unique else b"")
            try:
                response = await client.post("/classify/image", files={"file": ("x.bin", body)})
                statuses[response.status_code] += 1
            except httpx.HTTPError:
                statuses[0] += 1
            n += 1
    return statuses


async def phase(
    url: str, files: list[bytes], seconds: float, attack: tuple[str, bytes, int] | None
) -> tuple[float, Counter[int], Counter[int]]:
    stop = asyncio.Event()
    attackers = []
    if attack is not None:
        name, payload, count = attack
        base = 10 if name == "crash" else 20
        attackers = [
            asyncio.create_task(attacker(url, f"127.0.0.{base + k}", payload, stop, unique=name == "crash"))
            for k in range(count)
        ]
        await asyncio.sleep(1.0)  # let the attack start before measuring
    started = time.monotonic()
    ok, statuses = await neighbours(url, files, seconds, stop)
    rps = ok / (time.monotonic() - started)
    attack_statuses: Counter[int] = Counter()
    for result in await asyncio.gather(*attackers):
        attack_statuses.update(result)
    await asyncio.sleep(1.0)  # in-flight large decodes finish before the next phase
    return rps, statuses, attack_statuses


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def header_flood(server: Server, connections: int = 200, head_mib: int = 4) -> tuple[float, float, Counter[str]]:
    """RSS before and peak during ``connections`` clients each sending ``head_mib`` MiB of an unfinished head."""
    host, port = server.url.removeprefix("http://").split(":")
    pid = server.process.pid
    before = rss_mb(pid)
    peak = before
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    chunk = b"a" * 65536

    def client() -> None:
        outcome = "sent all"
        try:
            with socket.create_connection((host, int(port)), timeout=30) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Flood: ")
                for _ in range(head_mib * 16):
                    sock.sendall(chunk)
                time.sleep(2)
        except OSError as exc:
            outcome = type(exc).__name__
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, rss_mb(pid))
        time.sleep(0.02)
    return before, peak, outcomes


async def run_phases(url: str, seconds: float) -> list[tuple[str, float, Counter[int], Counter[int]]]:
    files = jpegs(64)
    crash = (b"UNIREP-FAULT:crash", 4)
    large = (zero_png(), 2)
    await phase(url, files, 3.0, None)  # warm-up: decoders, the model, the estimates
    results = []
    for name, attack in (
        ("alone", None),
        ("crash", ("crash", *crash)),
        ("alone", None),
        ("large", ("large", *large)),
        ("alone", None),
    ):
        rps, statuses, attack_statuses = await phase(url, files, seconds, attack)  # type: ignore[arg-type]
        results.append((name, rps, statuses, attack_statuses))
        print(f"{name:6s} neighbours {rps:6.1f} req/s {dict(statuses)}  attackers {dict(attack_statuses)}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running(Path(tmp), SETTINGS) as server:
        results = asyncio.run(run_phases(server.url, args.seconds))
        alone = [r[1] for r in results if r[0] == "alone"]
        crash_ratio = results[1][1] / ((alone[0] + alone[1]) / 2)
        large_ratio = results[3][1] / ((alone[1] + alone[2]) / 2)
        print(f"\nneighbour throughput with 4 crash clients: {crash_ratio:.2f} of alone (goal >= 0.70)")
        print(f"neighbour throughput with 2 large-image clients: {large_ratio:.2f} of alone (goal >= 0.70)")
        print(f"decoder processes lost: {server.metric('unirep_preprocess_failures_total'):.0f}")
        before, peak, outcomes = header_flood(server)
        print(f"\ngateway RSS {before:.0f} MB before, {peak:.0f} MB peak with 200 x 4 MiB unfinished heads: ")
        print(f"growth {peak - before:.1f} MB (goal < 50 MB); clients: {dict(outcomes)}")
        with server.client() as client:
            print("still serving:", client.get("/healthz").status_code)


if __name__ == "__main__":
    main()
