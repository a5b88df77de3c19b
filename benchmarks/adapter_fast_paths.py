"""Preprocessing fast paths against the paths they replace, per core, in interleaved rounds of one run.

- Image, 1080p JPEG: ``decode_mode`` ``exact`` (the official transform, the default) vs ``fast`` (DCT-domain
  downscaling), on the synthetic texture of ``adapters.py`` and on a 1920 x 1080 mosaic of real photos at their
  native scale (``benchmarks/photos.py``).
- Video, 10 s 720p30 H.264, 16 frames (dense, rate 4, the official sampling): the general reader (decord, which
  served every request before) vs the seeking reader (same frames), and the opt-in ``dense_keyframe`` sampling;
  once with x264's default keyframe interval (250 frames) and once with a 2 s interval (60), common for web video.

Each round runs every case for ``--seconds``; the median over all rounds is reported, with the load average.
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.photos import jpeg_bytes, load_photos, photo_mosaic
from modality_adapters import get_adapter
from modality_adapters.video import VideoAdapter, VideoParams, clip_to_map, frames_to_clip

Case = tuple[str, str, Callable[[], Any]]
"""(group, variant, one call)."""


def image_cases(synthetic_jpeg: bytes) -> list[Case]:
    adapter = get_adapter("image")
    mosaic = jpeg_bytes(photo_mosaic(load_photos()))
    cases: list[Case] = []
    for group, data in (("1080p JPEG, synthetic texture", synthetic_jpeg), ("1080p JPEG, photo mosaic", mosaic)):
        for mode in ("exact", "fast"):
            cases.append((group, mode, functools.partial(adapter.decode, data, decode_mode=mode)))
    return cases


def video_cases(make_video: Callable[[int | None], bytes]) -> list[Case]:
    adapter = VideoAdapter()
    p = VideoParams()

    def general(data: bytes) -> torch.Tensor:
        return clip_to_map(frames_to_clip(adapter.read_frames_general(data, p), p), p.layout)

    def seeking(data: bytes, **params: Any) -> torch.Tensor:
        return adapter.decode(data, **params)

    cases: list[Case] = []
    for gop, data in ((250, make_video(None)), (60, make_video(60))):
        group = f"10 s 720p H.264, keyint {gop}"
        cases.append((group, "general (decord)", functools.partial(general, data)))
        cases.append((group, "seeking (same frames)", functools.partial(seeking, data)))
        cases.append((group, "dense_keyframe", functools.partial(seeking, data, sampling="dense_keyframe")))
    return cases


def run_interleaved(cases: list[Case], rounds: int, seconds: float) -> list[dict[str, Any]]:
    """Every case once (warm-up), then ``rounds`` rounds over all cases of about ``seconds`` each."""
    for _, _, call in cases:
        call()
    times: dict[int, list[float]] = {k: [] for k in range(len(cases))}
    for _ in range(rounds):
        for k, (_, _, call) in enumerate(cases):
            deadline = time.perf_counter() + seconds
            while True:
                start = time.perf_counter()
                call()
                times[k].append(time.perf_counter() - start)
                if time.perf_counter() >= deadline:
                    break
    results = []
    for k, (group, variant, _) in enumerate(cases):
        median = statistics.median(times[k])
        results.append({"input": group, "variant": variant, "calls": len(times[k]), "median_ms": 1000 * median})
    return results


def report(results: list[dict[str, Any]], load_before: tuple[float, ...]) -> None:
    print(f"# load average before {fmt_load(load_before)}, after {fmt_load(os.getloadavg())}; pinned to 1 core")
    print(f"{'input':<33} {'variant':<22} {'calls':>5} {'median ms':>10} {'per s':>7} {'vs first':>8}")
    first: dict[str, float] = {}
    for r in results:
        base = first.setdefault(r["input"], r["median_ms"])
        print(
            f"{r['input']:<33} {r['variant']:<22} {r['calls']:>5} {r['median_ms']:>10.2f} "
            f"{1000 / r['median_ms']:>7.1f} {base / r['median_ms']:>7.2f}x"
        )


def fmt_load(load: tuple[float, ...]) -> str:
    return "/".join(f"{v:.2f}" for v in load)
