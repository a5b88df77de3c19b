"""Real media made on the fly for the adapter tests: images (PIL), audio (soundfile), video (PyAV), point clouds
and meshes (open3d), series (CSV/JSON). Everything is small so the whole suite stays fast on two cores.

PyAV is imported before anything can import decord: both bundle their own libvpx, and whichever loads first
wins the symbols, so decord first would leave PyAV unable to encode VP8/VP9 (WebM).
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import av  # must precede decord, see the module docstring
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

MALFORMED_TIME_BOUND_S = 5.0


class Media:
    """Encoders for every modality; each returns the file's bytes."""

    @staticmethod
    def image(
        fmt: str = "JPEG", size: tuple[int, int] = (96, 64), mode: str = "RGB", seed: int = 0, **save: object
    ) -> bytes:
        rng = np.random.default_rng(seed)
        w, h = size
        if mode in ("RGB", "RGBA"):
            arr = rng.integers(0, 256, (h, w, len(mode)), dtype=np.uint8)
            img = Image.fromarray(arr, mode=mode)
        elif mode == "I;16":
            img = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
        else:
            img = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), mode="L").convert(mode)
        buf = io.BytesIO()
        img.save(buf, format=fmt, **save)
        return buf.getvalue()

    @staticmethod
    def wav(
        seconds: float = 1.0, rate: int = 16000, channels: int = 1, subtype: str = "PCM_16", fmt: str = "WAV"
    ) -> bytes:
        n = int(seconds * rate)
        t = np.arange(n) / rate
        chans = [
            0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) + 0.05 * np.sin(2 * np.pi * 3000 * t) for c in range(channels)
        ]
        wave = np.stack(chans, axis=1).astype(np.float32)
        buf = io.BytesIO()
        sf.write(buf, wave, rate, subtype=subtype, format=fmt)
        return buf.getvalue()

    @staticmethod
    def video(
        values: Sequence[int] | None = None,
        n: int = 20,
        size: tuple[int, int] = (64, 48),
        container: str = "mp4",
        codec: str = "libx264",
        fps: int = 10,
    ) -> bytes:
        """Frames of constant grey ``values[i]`` (or random texture when None)."""
        w, h = size
        rng = np.random.default_rng(0)
        buf = io.BytesIO()
        out = av.open(buf, mode="w", format=container)
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "0", "preset": "ultrafast"}
        elif codec in ("mpeg4", "libvpx", "libvpx-vp9"):
            stream.bit_rate = 4_000_000
        frames = list(values) if values is not None else [None] * n
        for v in frames:
            arr = np.full((h, w, 3), v, np.uint8) if v is not None else rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        out.close()
        return buf.getvalue()

    @staticmethod
    def open3d_file(points: np.ndarray, suffix: str, binary: bool = False) -> bytes:
        import open3d as o3d

        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / f"c.{suffix}")
            assert o3d.io.write_point_cloud(path, cloud, write_ascii=not binary)
            return Path(path).read_bytes()

    @staticmethod
    def mesh_file(suffix: str, shape: str = "box") -> bytes:
        import open3d as o3d

        mesh = o3d.geometry.TriangleMesh.create_box() if shape == "box" else o3d.geometry.TriangleMesh.create_sphere()
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / f"m.{suffix}")
            assert o3d.io.write_triangle_mesh(path, mesh, write_ascii=True)
            return Path(path).read_bytes()

    @staticmethod
    def npy(array: np.ndarray) -> bytes:
        buf = io.BytesIO()
        np.save(buf, array)
        return buf.getvalue()

    @staticmethod
    def cloud(n: int = 2000, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).normal(size=(n, 3)) * (1.0, 0.5, 0.25)

    @staticmethod
    def series_csv(t: int = 60, v: int = 3, header: bool = True, stamps: bool = True, sep: str = ",") -> bytes:
        rng = np.random.default_rng(0)
        data = rng.normal(size=(t, v)) + np.arange(v)
        lines = []
        if header:
            lines.append(sep.join((["timestamp"] if stamps else []) + [f"v{j}" for j in range(v)]))
        for i in range(t):
            cells = [f"2024-03-{1 + i // 24:02d}T{i % 24:02d}:00:00"] if stamps else []
            lines.append(sep.join(cells + [repr(float(x)) for x in data[i]]))
        return ("\n".join(lines) + "\n").encode()

    @staticmethod
    def series_json(t: int = 60, v: int = 3, stamps: bool = False) -> bytes:
        data = (np.random.default_rng(1).normal(size=(t, v))).tolist()
        if not stamps:
            return json.dumps(data).encode()
        return json.dumps({"values": data, "timestamps": [1_700_000_000 + 3600 * i for i in range(t)]}).encode()


@pytest.fixture(scope="session")
def media() -> type[Media]:
    return Media
