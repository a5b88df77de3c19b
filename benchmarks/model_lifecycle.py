"""Model lifecycle: how long a fresh ``unirep serve`` takes to answer, and how long a trained model takes to swap
in through the repository API, with how the traffic running meanwhile fares.

Run: ``.venv/bin/python benchmarks/model_lifecycle.py`` (CPU). Two measurements, each on its own server:

- **start**: ``unirep serve`` with the README's defaults for every modality (random weights when the hub is
  offline, which load as fast as real ones), from the process start to ``/readyz`` and to the first answer of
  each modality, with the backend ``auto`` serves then and why (``/models``), and when its background
  measurement has reported for every model (``measured_s``, and the backends then). Three starts on one export
  cache directory: ``cold`` (empty: the first preferred candidate exported, checked and served, the others built
  and timed in the background once ready), ``remembered`` (the choices of the first start reused: only the chosen
  backends built), ``remeasured`` (graphs cached, the remembered backend serves while every candidate is built
  and timed again in the background: ``UNIREP_BACKEND_REMEASURE``); ``--cold-cache``: the first one only;
- **swap**: ``unirep serve --model-control explicit`` serving an image model at 224 from a repository; while
  ``--concurrency`` clients classify through that model (``?model=pets``) without pause, version 2 is loaded with
  ``POST /v2/repository/models/NAME/load``. Reported: the load's duration, failed requests (must be 0), requests
  answered by each version, and the latency before vs during the load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.service import media  # noqa: E402
from tests.service.repository_models import version_file, write_image_model  # noqa: E402
from tests.service.server import IMAGE_ONLY, start, stop  # noqa: E402

VERSION_OF = {"cat": "1", "dog": "1", "ant": "2", "bee": "2"}
"""Which version answered, told by its labels (the two versions have different ones)."""
FIRST_INPUTS: dict[str, Callable[[int], tuple[str, bytes]]] = {
    "image": media.jpeg,
    "audio": media.wav,
    "video": media.mp4,
    "pointcloud": media.ply,
    "timeseries": media.series_json,
}


def load_average() -> float:
    return os.getloadavg()[0]


def measure_start(workdir: Path, cache_dir: Path, kind: str) -> dict[str, object]:
    """Seconds from ``unirep serve`` to ready and to each modality's first answer (every modality, defaults), on
    the export cache ``cache_dir``; ``kind`` "remeasured" makes ``auto`` time the candidates again."""
    settings = {"UNIREP_LOG_LEVEL": "warning", "UNIREP_BACKEND_CACHE_DIR": str(cache_dir)}
    if kind == "remeasured":
        settings["UNIREP_BACKEND_REMEASURE"] = "1"
    t0 = time.monotonic()
    server = start(workdir, settings, base={})
    ready_s = time.monotonic() - t0
    firsts: dict[str, float] = {}
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            for modality, make in FIRST_INPUTS.items():
                name, data = make(1)
                answer = http.post(f"/classify/{modality}", files={"file": (name, data)})
                answer.raise_for_status()
                firsts[modality] = round(time.monotonic() - t0, 1)
            models = http.get("/models").json()["models"]
            measured_s, measured = _measured(http, t0)
    finally:
        stop(server)
    return {
        "start": kind,
        "ready_s": round(ready_s, 1),
        "first_answer_s": firsts,
        "backends": {m["modality"]: f"{m['backend']} ({m.get('backend_note')})" for m in models},
        "measured_s": measured_s,
        "backends_measured": {m["modality"]: f"{m['backend']} ({m.get('backend_note')})" for m in measured},
        "load_avg": round(load_average(), 2),
    }


def _measured(http: httpx.Client, t0: float, timeout_s: float = 300.0) -> tuple[float | None, list[dict[str, str]]]:
    """Seconds from the start until no model's note says it is still measuring in the background (None: not
    within ``timeout_s``), and ``/models`` then."""
    while True:
        models: list[dict[str, str]] = http.get("/models").json()["models"]
        if not any("in the background" in (m.get("backend_note") or "") for m in models):
            return round(time.monotonic() - t0, 1), models
        if time.monotonic() - t0 > timeout_s:
            return None, models
        time.sleep(0.5)


async def _hammer(url: str, model: str, stop_at: asyncio.Event, log: list[tuple[float, float, str, int]]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        seed = 0
        while not stop_at.is_set():
            seed += 1
            _, data = media.jpeg(seed % 50)
            started = time.monotonic()
            answer = await http.post(f"/classify/image?model={model}&top_k=1", files={"file": ("a.jpg", data)})
            ok = answer.status_code == 200
            version = VERSION_OF[answer.json()["predictions"][0]["label"]] if ok else answer.text[:200]
            log.append((started, time.monotonic() - started, version, answer.status_code))


async def _swap(url: str, concurrency: int, warm_s: float) -> dict[str, object]:
    log: list[tuple[float, float, str, int]] = []
    stop_at = asyncio.Event()
    clients = [asyncio.create_task(_hammer(url, "pets", stop_at, log)) for _ in range(concurrency)]
    await asyncio.sleep(warm_s)
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        load_started = time.monotonic()
        answer = await http.post("/v2/repository/models/pets/load", json={})
        load_s = time.monotonic() - load_started
    await asyncio.sleep(warm_s)
    stop_at.set()
    await asyncio.gather(*clients)
    before = [d for s, d, _, _ in log if s < load_started]
    during = [d for s, d, _, _ in log if load_started <= s < load_started + load_s]
    return {
        "load_status": answer.status_code,
        "load_s": round(load_s, 2),
        "requests": len(log),
        "failed": sum(1 for *_, status in log if status != 200),
        "by_version": {v: sum(1 for _, _, ver, _ in log if ver == v) for v in sorted({x[2] for x in log})},
        "failures": sorted({ver for _, _, ver, status in log if status != 200})[:3],
        "p50_before_ms": round(statistics.median(before) * 1000, 1) if before else None,
        "p50_during_ms": round(statistics.median(during) * 1000, 1) if during else None,
        "max_during_ms": round(max(during) * 1000, 1) if during else None,
        "load_avg": round(load_average(), 2),
    }


def measure_swap(workdir: Path, concurrency: int, cache_dir: Path) -> dict[str, object]:
    repository = workdir / "repository"
    shutil.rmtree(repository, ignore_errors=True)
    params = {"input_size": 224}
    write_image_model(version_file(repository, "pets", 1), ("cat", "dog"), seed=1, params=params)
    settings = {
        **IMAGE_ONLY,
        "UNIREP_LOG_LEVEL": "warning",
        "UNIREP_MODEL_REPOSITORY": str(repository),
        "UNIREP_MODEL_CONTROL": "explicit",
        "UNIREP_LOAD_MODELS": json.dumps(["pets"]),
        "UNIREP_CACHE_ENABLED": "false",
        "UNIREP_BACKEND_CACHE_DIR": str(cache_dir),
    }
    server = start(workdir, settings, base={})
    try:
        write_image_model(version_file(repository, "pets", 2), ("ant", "bee"), seed=2, params=params)
        result = asyncio.run(_swap(server.url, concurrency, warm_s=3.0))
        models = httpx.get(f"{server.url}/models", timeout=30).json()["models"]
        (v2,) = [m for m in models if m["name"] == "pets" and m["model_version"] == "2"]
        return {**result, "backend_v2": f"{v2.get('backend')} ({v2.get('backend_note')})"}
    finally:
        stop(server)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-start", action="store_true", help="measure the swap only")
    parser.add_argument("--skip-swap", action="store_true", help="measure the start only")
    parser.add_argument("--cold-cache", action="store_true", help="only the first start (empty export cache)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--swaps", type=int, default=2, help="swaps on one export cache (the first exports and measures; then reused)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="unirep-lifecycle-") as tmp:
        results: dict[str, object] = {"cpus": os.cpu_count(), "load_avg_at_start": round(load_average(), 2)}
        if not args.skip_start:
            kinds = ["cold"] if args.cold_cache else ["cold", "remembered", "remeasured"]
            results["start"] = [measure_start(Path(tmp), Path(tmp) / "start-cache", kind) for kind in kinds]
        if not args.skip_swap:
            cache = Path(tmp) / "swap-cache"
            results["swap"] = [measure_swap(Path(tmp), args.concurrency, cache) for _ in range(args.swaps)]
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
