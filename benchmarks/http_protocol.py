"""What the bounded HTTP protocol costs per request: uvicorn's httptools protocol (unbounded, its default) against
``GuardedH11Protocol`` on the same minimal app, in one run.

Run: ``.venv/bin/python benchmarks/http_protocol.py [--seconds 5 --rounds 3]``. Each server is a subprocess
running the app below; the client keeps ``--connections`` keep-alive connections busy with small POSTs (a
16 KiB body, like a small upload) and GETs, and rounds alternate between the two protocols. Reported: requests
per second (median of the rounds) and the per-request time difference, to set beside a model request's tens of
milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.service.server import free_port  # noqa: E402

SERVER = """
import sys, uvicorn
from service.http.guarded_protocol import ConnectionLimits, protocol_class

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok": true}'})

http = protocol_class(ConnectionLimits()) if sys.argv[2] == "guarded" else "httptools"
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http=http, log_level="warning", lifespan="off")
"""


def start(kind: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(port), kind], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(url, timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{kind} server did not start")


async def load(url: str, seconds: float, connections: int) -> float:
    body = b"x" * 16384
    done = 0
    end = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:

        async def loop(k: int) -> None:
            nonlocal done
            while time.monotonic() < end:
                if k % 2:
                    await client.post("/x", content=body)
                else:
                    await client.get("/x")
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(loop(k) for k in range(connections)))
        return done / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    servers = {kind: start(kind) for kind in ("httptools", "guarded")}
    rates: dict[str, list[float]] = {kind: [] for kind in servers}
    try:
        for _ in range(args.rounds):
            for kind, (_, url) in servers.items():
                rates[kind].append(asyncio.run(load(url, args.seconds, args.connections)))
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(10)
    medians = {kind: statistics.median(values) for kind, values in rates.items()}
    for kind, values in rates.items():
        print(f"{kind:9s} req/s per round: {', '.join(f'{v:.0f}' for v in values)}; median {medians[kind]:.0f}")
    extra_ms = 1000 / medians["guarded"] - 1000 / medians["httptools"]
    print(f"guarded / httptools: {medians['guarded'] / medians['httptools']:.2f}; {extra_ms:+.3f} ms per request")


if __name__ == "__main__":
    main()
