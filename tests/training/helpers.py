"""Tiny labelled data sets of real media, made by the tests: two or three classes a small network can tell apart.

Each maker writes ``root/<label>/<n>.<ext>`` files (the class-folder layout) and returns ``root``. ``SMALL``
holds adapter params that keep every modality's input at 32 x 32 so that a 2-core CPU trains in seconds.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from training import TrainConfig

SMALL: dict[str, dict[str, Any]] = {
    "image": {"input_size": 32},
    "audio": {"num_mel_bins": 32, "target_frames": 32},
    "video": {"frame_size": 16, "num_frames": 4, "sampling_rate": 1},
    "pointcloud": {"image_size": 32, "num_points": 128},
    "timeseries": {"d_model": 16},
}


def image_bytes(color: tuple[int, int, int], seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(color)[None, None, :] + rng.normal(0, 25, (40, 48, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def wav_bytes(freq: float, seed: int) -> bytes:
    import soundfile as sf

    rate = 16000
    t = np.arange(int(0.4 * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * np.random.default_rng(seed).normal(size=t.size)
    buf = io.BytesIO()
    sf.write(buf, wave.astype(np.float32), rate, format="WAV")
    return buf.getvalue()


def mp4_bytes(direction: int, seed: int) -> bytes:
    """A bright square moving right (direction 1) or left (-1) over a noisy background."""
    import av

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(8):
            frame = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
            x = 4 + 3 * i if direction > 0 else 24 - 3 * i
            frame[12:20, x : x + 6] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, "rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def ply_bytes(shape: str, seed: int) -> bytes:
    """Points on a sphere or in a flat box."""
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(300, 3))
    if shape == "sphere":
        points /= np.linalg.norm(points, axis=1, keepdims=True)
    else:
        points = rng.uniform(-1, 1, size=(300, 3)) * np.array([1.0, 0.2, 1.0])
    properties = "".join(f"property float {axis}\n" for axis in "xyz")
    header = f"ply\nformat ascii 1.0\nelement vertex 300\n{properties}end_header\n"
    return (header + "".join(f"{x:.5f} {y:.5f} {z:.5f}\n" for x, y, z in points)).encode()


def csv_bytes(kind: str, seed: int, steps: int = 20) -> bytes:
    """Two variables: a sine and its cosine, or square waves."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps) / 4.0 + rng.uniform(0, 3)
    a, b = np.sin(t), np.cos(t)
    if kind == "square":
        a, b = np.sign(a), np.sign(b)
    rows = [f"{x + 0.05 * rng.normal():.4f},{y + 0.05 * rng.normal():.4f}" for x, y in zip(a, b, strict=True)]
    return ("a,b\n" + "\n".join(rows) + "\n").encode()


CLASSES: dict[str, tuple[str, dict[str, Callable[[int], bytes]]]] = {
    "image": ("png", {"red": lambda s: image_bytes((220, 30, 30), s), "blue": lambda s: image_bytes((30, 30, 220), s)}),
    "audio": ("wav", {"low": lambda s: wav_bytes(300.0, s), "high": lambda s: wav_bytes(3000.0, s)}),
    "video": ("mp4", {"right": lambda s: mp4_bytes(1, s), "left": lambda s: mp4_bytes(-1, s)}),
    "pointcloud": ("ply", {"sphere": lambda s: ply_bytes("sphere", s), "slab": lambda s: ply_bytes("slab", s)}),
    "timeseries": ("csv", {"smooth": lambda s: csv_bytes("sine", s), "square": lambda s: csv_bytes("square", s)}),
}


def make_dataset(root: Path, modality: str, per_class: int = 4, seed: int = 0) -> Path:
    ext, makers = CLASSES[modality]
    for label, make in makers.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / label / f"{i}.{ext}").write_bytes(make(seed * 1000 + i))
    return root


def small_config(modality: str, data: Path, out: Path, cache: Path, **overrides: Any) -> TrainConfig:
    """One quick epoch (no minimum step count) on CPU with the tiny params, no progress bars, inline decoding."""
    values: dict[str, Any] = {
        "modality": modality,
        "data": data,
        "out": out,
        "params": dict(SMALL[modality]),
        "epochs": 1,
        "min_steps": 0,
        "batch_size": 4,
        "lr": 2e-3,
        "device": "cpu",
        "workers": 1,
        "cache_dir": cache,
        "progress": False,
        "val_fraction": 0.25,
    }
    values.update(overrides)
    return TrainConfig(**values)
