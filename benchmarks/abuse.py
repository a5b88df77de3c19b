"""What hostile clients cost their neighbours, measured against a real ``unirep serve`` in one run.

Run: ``.venv/bin/python benchmarks/abuse.py [--seconds 20] [--only attacks|latency|memory] [--setting
UNIREP_NAME=VALUE ...]``. One server (image only, cache off, random weights,
128 px input, 2 decoders, crash fault injection on). Phases, each ``--seconds`` long, interleaved with baselines
so that a shared machine's drift shows up instead of being mistaken for an effect:

- ``alone``: 4 neighbour connections (from 127.0.0.2) send distinct 640 x 480 JPEGs back to back;
- ``crash``: the same, while 4 attackers (each from its own loopback address) send inputs that kill their decoder
  with SIGSEGV, every one different (the test hook ``UNIREP-FAULT:crash`` plus a counter: the same signal a
  crafted AVI causes in native code, without depending on one library version's bug);
- ``large``: the same, while 2 attackers send a 7000 x 7000 all-zero PNG (49 Mpx, within the 50 Mpx limit;
  about 200 KB on the wire, over a second of decoding and ~200 MB of memory each);
- ``shared``: the crash attack from the neighbours' own address (127.0.0.2): one client, as behind a proxy that
  forwards nothing or an office NAT;
- ``proxy``: neighbours and attackers all behind one trusted proxy (127.0.0.9, ``trusted_proxies``), each with its
  own ``X-Forwarded-For`` address, compared with the neighbours behind the proxy alone (``proxy-alone``).

Neighbour throughput under an attack is reported as a ratio to the mean of the baselines around it (goal >=
0.70), with the neighbours' statuses (goal: no 429). Then a light client (one connection) beside a heavy one
(12 connections), both sending JPEGs: the light client's median latency beside the heavy one against alone
(goal <= 3x). Then gateway memory: RSS of the server process while 200 connections each send 4 MiB of a request head
that never ends (goal: growth < 50 MB), sampled every 20 ms, peak reported.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import socket
import statistics
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
    "UNIREP_TRUSTED_PROXIES": "127.0.0.9/32",
}
PROXY = "127.0.0.9"


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


async def neighbours(
    url: str, files: list[bytes], seconds: float, stop: asyncio.Event, proxied: bool = False
) -> tuple[int, Counter[int]]:
    """4 back-to-back loops from 127.0.0.2 (or 4 users behind the proxy); returns (successes, statuses)."""
    statuses: Counter[int] = Counter()
    end = time.monotonic() + seconds
    transport = httpx.AsyncHTTPTransport(local_address=PROXY if proxied else "127.0.0.2")
    async with httpx.AsyncClient(base_url=url, timeout=60, transport=transport) as client:

        async def loop(offset: int) -> None:
            i = offset
            headers = {"X-Forwarded-For": f"198.51.100.{offset + 1}"} if proxied else {}
            while time.monotonic() < end:
                body = {"file": ("x.jpg", files[i % len(files)])}
                response = await client.post("/classify/image", files=body, headers=headers)
                statuses[response.status_code] += 1
                i += 4

        await asyncio.gather(*(loop(k) for k in range(4)))
    stop.set()
    return statuses[200], statuses


async def attacker(
    url: str, address: str, payload: bytes, stop: asyncio.Event, unique: bool, forwarded: str | None = None
) -> Counter[int]:
    statuses: Counter[int] = Counter()
    transport = httpx.AsyncHTTPTransport(local_address=address)
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    async with httpx.AsyncClient(base_url=url, timeout=120, transport=transport) as client:
        n = 0
        while not stop.is_set():
            body = payload + (b"\n%s-%s-%d" % (address.encode(), str(forwarded).encode(), n) if unique else b"")
            try:
                response = await client.post("/classify/image", files={"file": ("x.bin", body)}, headers=headers)
                statuses[response.status_code] += 1
            except httpx.HTTPError:
                statuses[0] += 1
            n += 1
    return statuses


def attacker_origin(name: str, k: int) -> tuple[str, str | None]:
    """(source address, X-Forwarded-For) of attacker ``k`` in attack ``name``."""
    if name == "shared":
        return "127.0.0.2", None
    if name == "proxy":
        return PROXY, f"198.51.100.{100 + k}"
    return f"127.0.0.{(10 if name == 'crash' else 20) + k}", None


async def phase(
    url: str, files: list[bytes], seconds: float, attack: tuple[str, bytes, int] | None, proxied: bool = False
) -> tuple[float, Counter[int], Counter[int]]:
    stop = asyncio.Event()
    attackers = []
    if attack is not None:
        name, payload, count = attack
        origins = [attacker_origin(name, k) for k in range(count)]
        attackers = [
            asyncio.create_task(attacker(url, address, payload, stop, name != "large", forwarded))
            for address, forwarded in origins
        ]
        await asyncio.sleep(1.0)  # let the attack start before measuring
    started = time.monotonic()
    ok, statuses = await neighbours(url, files, seconds, stop, proxied)
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
        ("shared", ("shared", *crash)),
        ("alone", None),
        ("proxy-alone", None),
        ("proxy", ("proxy", *crash)),
        ("proxy-alone", None),
    ):
        proxied = name.startswith("proxy")
        rps, statuses, attack_statuses = await phase(url, files, seconds, attack, proxied)
        results.append((name, rps, statuses, attack_statuses))
        print(f"{name:6s} neighbours {rps:6.1f} req/s {dict(statuses)}  attackers {dict(attack_statuses)}", flush=True)
    return results


async def latencies(
    url: str, address: str, files: list[bytes], end: float, offset: int = 0, statuses: Counter[int] | None = None
) -> list[float]:
    """One connection's back-to-back request latencies (seconds, successes only) until ``end``."""
    out: list[float] = []
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=url, timeout=120, transport=transport) as client:
        i = offset
        while time.monotonic() < end:
            started = time.monotonic()
            response = await client.post("/classify/image", files={"file": ("x.jpg", files[i % len(files)])})
            if response.status_code == 200:
                out.append(time.monotonic() - started)
            if statuses is not None:
                statuses[response.status_code] += 1
            i += 1
    return out


async def light_beside_heavy(url: str, seconds: float) -> tuple[float, float, Counter[int]]:
    """The light client's median latency alone and beside a 12-connection heavy client, and the heavy's statuses."""
    files = jpegs(64)
    alone = await latencies(url, "127.0.0.41", files, time.monotonic() + seconds)
    end = time.monotonic() + seconds
    heavy_statuses: Counter[int] = Counter()
    heavy = [
        asyncio.create_task(latencies(url, "127.0.0.40", files, end + 1.0, k * 5, heavy_statuses)) for k in range(12)
    ]
    await asyncio.sleep(1.0)  # the heavy client's queue fills first
    beside = await latencies(url, "127.0.0.41", files, end + 1.0, 32)
    await asyncio.gather(*heavy)
    return statistics.median(alone), statistics.median(beside), heavy_statuses


def ratio(results: list[tuple[str, float, Counter[int], Counter[int]]], index: int, baseline: str) -> float:
    """Throughput of phase ``index`` against the mean of the nearest ``baseline`` phases before and after it."""
    before = next(r[1] for r in reversed(results[:index]) if r[0] == baseline)
    after = next(r[1] for r in results[index + 1 :] if r[0] == baseline)
    return results[index][1] / ((before + after) / 2)


def report_attacks(results: list[tuple[str, float, Counter[int], Counter[int]]]) -> None:
    print()
    for index, (name, _, statuses, _) in enumerate(results):
        if name in ("crash", "large", "shared", "proxy"):
            baseline = "proxy-alone" if name == "proxy" else "alone"
            refused = statuses.get(429, 0)
            print(
                f"neighbour throughput, {name:6s} attack: {ratio(results, index, baseline):.2f} of alone "
                f"(goal >= 0.70); neighbours' 429s: {refused} (goal 0)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--only", choices=["attacks", "latency", "memory"], help="run one part of the benchmark")
    parser.add_argument("--setting", action="append", default=[], help="UNIREP_NAME=VALUE on top of the defaults")
    args = parser.parse_args()
    settings = {**SETTINGS, **dict(pair.split("=", 1) for pair in args.setting)}
    with tempfile.TemporaryDirectory() as tmp, running(Path(tmp), settings) as server:
        if args.only in (None, "attacks"):
            report_attacks(asyncio.run(run_phases(server.url, args.seconds)))
        if args.only in (None, "latency"):
            alone_s, beside_s, heavy = asyncio.run(light_beside_heavy(server.url, args.seconds))
            print(
                f"light client median {alone_s * 1000:.0f} ms alone, {beside_s * 1000:.0f} ms beside a 12-connection "
                f"heavy client: {beside_s / alone_s:.2f}x (goal <= 3x); heavy client's answers {dict(heavy)}"
            )
        print(f"decoder processes lost: {server.metric('unirep_preprocess_failures_total'):.0f}")
        if args.only in (None, "memory"):
            before, peak, outcomes = header_flood(server)
            print(f"\ngateway RSS {before:.0f} MB before, {peak:.0f} MB peak with 200 x 4 MiB unfinished heads: ")
            print(f"growth {peak - before:.1f} MB (goal < 50 MB); clients: {dict(outcomes)}")
        with server.client() as client:
            print("still serving:", client.get("/healthz").status_code)


if __name__ == "__main__":
    main()
