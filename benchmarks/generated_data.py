"""Faithfully generated labelled data for the training benchmark: spoken words, point-cloud shapes, motion videos.

Each ``make_*`` writes ``ROOT/train/<label>/<file>`` and ``ROOT/test/<label>/<file>`` (the class-folder layout
``unirep train`` reads) and returns the raw arrays of both splits for the baselines. Test sets differ from
training sets in what matters for generalisation: unseen voices for words; fresh poses, scales, densities, noise
and cut-away views for shapes (in any pose, or upright: turned about the up axis only, as scanned objects stand);
fresh backgrounds, objects and speeds for motion; fresh backgrounds, colours, sizes and motions for appearance
(clips told apart only by the object's outline, whatever it does).
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DATA_PARAMS",
    "LOOKS",
    "MOTIONS",
    "SHAPES",
    "WORDS",
    "make_appearance_videos",
    "make_motion_videos",
    "make_shapes",
    "make_spoken_words",
]

WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "zero", "one"]
TRAIN_VOICES = [f"{a}+{v}" for a in ("en-gb", "en-us", "en-gb-x-rp", "en-029") for v in ("m1", "m3", "f1", "f3")]
TEST_VOICES = [f"{a}+{v}" for a in ("en-gb-scotland", "en-gb-x-gbclan") for v in ("m2", "f2", "m5")]
"""Test voices share neither accent nor voice variant with the training voices."""


def make_spoken_words(root: Path, per_voice: int = 1, seed: int = 0) -> dict[str, list[tuple[Path, str]]]:
    """espeak-ng WAVs of WORDS: every voice at random speed (110-220 wpm) and pitch (20-80), ``per_voice`` each."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng)")
    rng = np.random.default_rng(seed)
    out: dict[str, list[tuple[Path, str]]] = {"train": [], "test": []}
    for split, voices in (("train", TRAIN_VOICES), ("test", TEST_VOICES)):
        for word in WORDS:
            folder = root / split / word
            folder.mkdir(parents=True, exist_ok=True)
            for voice in voices:
                for k in range(per_voice):
                    path = folder / f"{voice.replace('+', '_')}_{k}.wav"
                    speed, pitch = int(rng.integers(110, 221)), int(rng.integers(20, 81))
                    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), word]
                    subprocess.run(cmd, check=True, capture_output=True)
                    out[split].append((path, word))
    return out


SHAPES = ["sphere", "cube", "cylinder", "cone", "torus", "plane", "dumbbell", "snowman", "ring_of_cubes"]


def _sphere(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _cube(rng: np.random.Generator, n: int) -> np.ndarray:
    p = rng.uniform(-1, 1, size=(n, 3))
    axis = rng.integers(0, 3, n)
    p[np.arange(n), axis] = rng.choice([-1.0, 1.0], n)
    return p


def _shape(name: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """Surface samples of one primitive or composition, in a canonical pose."""
    if name == "sphere":
        return _sphere(rng, n)
    if name == "cube":
        return _cube(rng, n)
    t = rng.uniform(0, 2 * np.pi, n)
    if name == "cylinder":
        return np.stack([np.cos(t), np.sin(t), rng.uniform(-1.5, 1.5, n)], 1)
    if name == "cone":
        h = np.sqrt(rng.uniform(0, 1, n))
        return np.stack([h * np.cos(t), h * np.sin(t), 1.5 - 2 * h], 1)
    if name == "torus":
        s = rng.uniform(0, 2 * np.pi, n)
        return np.stack([(1 + 0.35 * np.cos(s)) * np.cos(t), (1 + 0.35 * np.cos(s)) * np.sin(t), 0.35 * np.sin(s)], 1)
    if name == "plane":
        return np.stack([rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), 0.02 * rng.normal(size=n)], 1)
    if name == "dumbbell":
        half = n // 2
        bar = np.stack(
            [rng.uniform(-1, 1, n - 2 * half), 0.08 * np.cos(t[: n - 2 * half]), 0.08 * np.sin(t[: n - 2 * half])], 1
        )
        return np.concatenate([_sphere(rng, half) * 0.5 + [-1.4, 0, 0], _sphere(rng, half) * 0.5 + [1.4, 0, 0], bar])
    if name == "snowman":
        a = n * 2 // 3
        low, high = np.array([0.0, 0.0, -0.6]), np.array([0.0, 0.0, 1.0])
        return np.concatenate([_sphere(rng, a) + low, _sphere(rng, n - a) * 0.6 + high])
    if name == "ring_of_cubes":
        parts = [_cube(rng, n // 6) * 0.25 + [1.2 * np.cos(a), 1.2 * np.sin(a), 0] for a in np.arange(6) * np.pi / 3]
        return np.concatenate(parts)
    raise ValueError(name)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _upright_rotation(rng: np.random.Generator) -> np.ndarray:
    """The shape's own axis (z) turned to the up axis (y), then a random turn about the up axis."""
    a = rng.uniform(0, 2 * np.pi)
    about_up = np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])
    z_to_y = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    return about_up @ z_to_y


def make_shapes(
    root: Path, train_per_class: int = 24, test_per_class: int = 10, seed: int = 0, pose: str = "arbitrary"
) -> dict:
    """NPY clouds: a rotation (``arbitrary``: any; ``upright``: about the up axis), anisotropic scale (0.6-1.4),
    300-2000 points, noise, and 30 % cut-away views."""
    rotate = {"arbitrary": _random_rotation, "upright": _upright_rotation}[pose]
    rng = np.random.default_rng(seed)
    out: dict[str, list[tuple[np.ndarray, str]]] = {"train": [], "test": []}
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for name in SHAPES:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                pts = _shape(name, rng, int(rng.integers(300, 2001)))
                pts = pts * rng.uniform(0.6, 1.4, 3) @ rotate(rng).T
                pts = pts + rng.normal(scale=rng.uniform(0.0, 0.03), size=pts.shape)
                if rng.uniform() < 0.3:  # a partial view: what one side of a sensor sees
                    keep = pts @ _sphere(rng, 1)[0] < np.quantile(pts @ _sphere(rng, 1)[0], rng.uniform(0.6, 0.9))
                    pts = pts[keep] if keep.sum() > 50 else pts
                pts = (pts * rng.uniform(0.5, 5.0) + rng.normal(size=3)).astype(np.float32)
                np.save(folder / f"{k}.npy", pts)
                out[split].append((pts, name))
    return out


DATA_PARAMS: dict[str, dict[str, Any]] = {"video": {"num_frames": 16, "sampling_rate": 1}}
"""Params that follow from the generated data, over a recipe's map, for every run on it: the clips are 16 frames
long, so the video model reads every one of them (the ``motion`` layout costs 2 channels per frame, not pixels);
at the served ``sampling_rate`` of 4 it would read 4 of them and the last one 12 times over. The map sizes
themselves are the recipe's (``--recipe cpu``: each adapter's ``small_params``)."""


MOTIONS = ["right", "left", "up", "down", "rotate", "zoom_in", "static"]
LOOKS = ["square", "disc", "diamond", "ring", "cross", "triangle"]


def _inside(look: str | None, u: np.ndarray, v: np.ndarray, half: float) -> np.ndarray:
    """The object's outline in its own coordinates: the striped box of the motion set, or one of LOOKS."""
    r = np.sqrt(u * u + v * v)
    outlines = {
        None: lambda: (np.abs(u) < half) & (np.abs(v) < half * 0.6),
        "square": lambda: (np.abs(u) < half * 0.8) & (np.abs(v) < half * 0.8),
        "disc": lambda: r < half,
        "diamond": lambda: np.abs(u) + np.abs(v) < half * 1.1,
        "ring": lambda: (r < half) & (r > half * 0.55),
        "cross": lambda: ((np.abs(u) < half) & (np.abs(v) < half / 3)) | ((np.abs(u) < half / 3) & (np.abs(v) < half)),
        "triangle": lambda: (v < half * 0.6) & (np.abs(u) < (v + half) * 0.6),
    }
    return outlines[look]()


def _frames(motion: str, rng: np.random.Generator, n: int = 16, size: int = 64, look: str | None = None) -> np.ndarray:
    """``n`` RGB frames: an object moving over a random background (noise, gradient or stripes); the object is a
    striped box, or (``look``) a plain shape of LOOKS."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    kind = rng.integers(0, 3)
    if kind == 0:
        bg = rng.uniform(0, 255, (size, size, 3)) * 0.5
    elif kind == 1:
        bg = (xx[..., None] * rng.uniform(0, 4, 3) + yy[..., None] * rng.uniform(0, 4, 3)) % 255
    else:
        bg = 127 + 100 * np.sin(xx[..., None] * rng.uniform(0.1, 0.5) + rng.uniform(0, 6, 3))
    colour = rng.uniform(0, 255, 3)
    half = rng.uniform(6, 12)
    speed = rng.uniform(1.0, 2.5)
    cx, cy = rng.uniform(size * 0.35, size * 0.65, 2)
    frames = []
    for i in range(n):
        step = i - n / 2
        x, y, angle, scale = cx, cy, 0.0, 1.0
        if motion == "right":
            x = cx + speed * step
        elif motion == "left":
            x = cx - speed * step
        elif motion == "up":
            y = cy - speed * step
        elif motion == "down":
            y = cy + speed * step
        elif motion == "rotate":
            angle = 0.15 * speed * i
        elif motion == "zoom_in":
            scale = 0.6 + 0.07 * speed * i
        u = ((xx - x) * np.cos(angle) + (yy - y) * np.sin(angle)) / scale
        v = (-(xx - x) * np.sin(angle) + (yy - y) * np.cos(angle)) / scale
        inside = _inside(look, u, v, half)
        stripes = ((u // 3) % 2)[..., None] * (60 if look is None else 0)
        frame = np.where(inside[..., None], np.clip(colour - stripes, 0, 255), bg)
        frames.append(frame + rng.normal(scale=4, size=frame.shape))
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def _mp4(frames: np.ndarray) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as box:
        # x264's macroblock tree (mbtree, on by default) gives a different encoding of the same frames from run to run
        # here (single-threaded too), so a benchmark set would change under the same seed; without it the bytes repeat.
        stream = box.add_stream("libx264", rate=8, options={"x264-params": "mbtree=0"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            box.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        box.mux(stream.encode(None))
    return buf.getvalue()


def make_motion_videos(root: Path, train_per_class: int = 16, test_per_class: int = 8, seed: int = 0) -> dict:
    """MP4 clips (16 frames, 64 x 64) of MOTIONS over varied backgrounds; the raw frames for the baseline."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[tuple[np.ndarray, str]]] = {"train": [], "test": []}
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for motion in MOTIONS:
            folder = root / split / motion
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                frames = _frames(motion, rng)
                (folder / f"{k}.mp4").write_bytes(_mp4(frames))
                out[split].append((frames, motion))
    return out


def make_appearance_videos(root: Path, train_per_class: int = 16, test_per_class: int = 8, seed: int = 1) -> dict:
    """MP4 clips like the motion set's, labelled by the object's outline (LOOKS), each moving by a random one of
    MOTIONS at a random speed, over a random background, in a random colour: only the look tells them apart."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[tuple[np.ndarray, str]]] = {"train": [], "test": []}
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for look in LOOKS:
            folder = root / split / look
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                frames = _frames(MOTIONS[int(rng.integers(len(MOTIONS)))], rng, look=look)
                (folder / f"{k}.mp4").write_bytes(_mp4(frames))
                out[split].append((frames, look))
    return out
