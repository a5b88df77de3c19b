"""Real media files made by the tests (no fixtures on disk): each function returns (file name, bytes)."""

from __future__ import annotations

import io
import json

import numpy as np


def jpeg(seed: int = 0, size: tuple[int, int] = (96, 72)) -> tuple[str, bytes]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return "photo.jpg", buf.getvalue()


def wav(seed: int = 0, seconds: float = 0.7, rate: int = 16000) -> tuple[str, bytes]:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * (300 + 50 * seed) * t) + 0.01 * np.random.default_rng(seed).normal(size=t.size)
    buf = io.BytesIO()
    sf.write(buf, tone.astype(np.float32), rate, format="WAV")
    return "clip.wav", buf.getvalue()


def mp4(seed: int = 0, frames: int = 12, size: tuple[int, int] = (64, 48)) -> tuple[str, bytes]:
    import av

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return "clip.mp4", buf.getvalue()


def ply(seed: int = 0, n: int = 400) -> tuple[str, bytes]:
    points = np.random.default_rng(seed).normal(size=(n, 3))
    header = (
        f"ply\nformat ascii 1.0\nelement vertex {n}\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    )
    body = "".join(f"{x:.5f} {y:.5f} {z:.5f}\n" for x, y, z in points)
    return "cloud.ply", (header + body).encode()


def series(seed: int = 0, steps: int = 24, variables: int = 2, timestamps: bool = True) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    body: dict[str, object] = {"data": rng.normal(size=(steps, variables)).round(4).tolist()}
    if timestamps:
        body["timestamps"] = [f"2024-01-0{1 + h // 24}T{h % 24:02d}:00:00" for h in range(steps)]
    return body


def series_json(seed: int = 0) -> tuple[str, bytes]:
    return "series.json", json.dumps(series(seed)).encode()


MEDIA = {"image": jpeg, "audio": wav, "video": mp4, "pointcloud": ply, "timeseries": series_json}
