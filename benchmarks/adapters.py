"""Items per second of each modality adapter's ``decode`` on one CPU core, for realistic inputs made here.

Inputs: a 1080p JPEG photo-like image, 10 s of 44.1 kHz stereo audio (WAV), 10 s of 720p30 H.264 video (MP4),
a 100k-point binary PLY, and a 10,000 x 8 CSV with a timestamp column. Each adapter runs with its official
default params (time series: seq_len 48, num_vars 8). One warm-up call first (lazy imports, caches), then as
many calls as fit in ``--seconds`` (at least ``--min-iters``).

Usage: ``python benchmarks/adapters.py [--seconds 5] [--only image,audio] [--json out.json]``

``--compare`` instead measures the preprocessing fast paths against the paths they replace (image ``exact`` vs
``fast``, video general vs seeking reader) in ``--rounds`` interleaved rounds; see ``adapter_fast_paths.py``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av  # before decord (see tests/modality_adapters/conftest.py)
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modality_adapters import get_adapter


def make_jpeg() -> bytes:
    from PIL import Image

    h, w = 1080, 1920
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(0)
    base = np.stack([128 + 100 * np.sin(xx / 97), 128 + 100 * np.cos(yy / 71), 128 + 60 * np.sin((xx + yy) / 150)], -1)
    noise = rng.normal(0, 12, (h, w, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_audio() -> bytes:
    import soundfile as sf

    rate, seconds = 44100, 10
    t = np.arange(rate * seconds) / rate
    rng = np.random.default_rng(0)
    left = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.normal(size=t.size)
    right = 0.3 * np.sin(2 * np.pi * 660 * t) + 0.05 * rng.normal(size=t.size)
    buf = io.BytesIO()
    sf.write(buf, np.stack([left, right], 1).astype(np.float32), rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def make_video(gop: int | None = None) -> bytes:
    """10 s of 720p30 H.264 with moving gradients; ``gop``: the keyframe interval (None: x264's default, 250)."""
    w, h, fps, seconds = 1280, 720, 30, 10
    buf = io.BytesIO()
    out = av.open(buf, mode="w", format="mp4")
    stream = out.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.options = {"preset": "veryfast", "crf": "23", **({"g": str(gop)} if gop else {})}
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(fps * seconds):
        frame = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, ((xx + yy) // 4 + i) % 256], -1).astype(np.uint8)
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return buf.getvalue()


def make_ply() -> bytes:
    import open3d as o3d

    rng = np.random.default_rng(0)
    pts = rng.normal(size=(100_000, 3)) * (1.0, 0.6, 0.3)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cloud.ply"
        o3d.io.write_point_cloud(path, cloud, write_ascii=False)
        return path.read_bytes()


def make_csv() -> bytes:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(10_000, 8)).cumsum(axis=0)
    start = np.datetime64("2024-01-01T00:00:00")
    lines = ["timestamp," + ",".join(f"v{j}" for j in range(8))]
    for i, row in enumerate(values):
        lines.append(f"{start + np.timedelta64(i, 'h')}," + ",".join(f"{v:.5f}" for v in row))
    return ("\n".join(lines) + "\n").encode()


CASES: dict[str, tuple[str, Callable[[], bytes], dict[str, Any]]] = {
    "image": ("1080p JPEG", make_jpeg, {}),
    "audio": ("10 s 44.1 kHz stereo WAV", make_audio, {}),
    "video": ("10 s 720p30 H.264 MP4", lambda: make_video(), {}),
    "pointcloud": ("100k-point binary PLY", make_ply, {}),
    "timeseries": ("10,000 x 8 CSV + timestamps", make_csv, {"num_vars": 8}),
}


def bench(modality: str, seconds: float, min_iters: int) -> dict[str, Any]:
    label, make, params = CASES[modality]
    data = make()
    adapter = get_adapter(modality)
    adapter.prepare()
    shape = tuple(adapter.decode(data, **params).shape)  # warm-up
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_iters or time.perf_counter() < deadline:
        start = time.perf_counter()
        adapter.decode(data, **params)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "modality": modality,
        "input": label,
        "bytes": len(data),
        "output_shape": list(shape),
        "iterations": len(times),
        "median_ms": round(1000 * median, 2),
        "items_per_s": round(1 / median, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time budget per modality")
    parser.add_argument("--min-iters", type=int, default=5)
    parser.add_argument("--only", default=",".join(CASES), help="comma-separated modalities")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--compare", action="store_true", help="fast paths vs the paths they replace")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of --compare")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):  # one core for everything, decoder threads included
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    if args.compare:
        compare(args)
        return
    results = [bench(m, args.seconds, args.min_iters) for m in args.only.split(",")]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, pinned to 1 core, torch threads = 1")
    print(f"{'modality':<11} {'input':<29} {'output':<15} {'iters':>5} {'median ms':>10} {'items/s':>8}")
    for r in results:
        shape = "x".join(map(str, r["output_shape"]))
        print(
            f"{r['modality']:<11} {r['input']:<29} {shape:<15} {r['iterations']:>5} "
            f"{r['median_ms']:>10.2f} {r['items_per_s']:>8.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def compare(args: argparse.Namespace) -> None:
    from benchmarks import adapter_fast_paths as fp

    load_before = os.getloadavg()
    only = args.only.split(",")
    cases = (fp.image_cases(make_jpeg()) if "image" in only else []) + (
        fp.video_cases(make_video) if "video" in only else []
    )
    results = fp.run_interleaved(cases, args.rounds, args.seconds)
    fp.report(results, load_before)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
