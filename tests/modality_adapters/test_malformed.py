"""Bad input: at least 20 malformed payloads per modality, each a typed error within a time bound.

The cases are built from real media (then broken), so they exercise the decoders' real failure paths. A second
test replays every case in a spawned child process, proving that no payload takes the interpreter down (a
segfault there would show as a non-zero exit) and that adapters work under the service's spawn start method.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import struct
import time
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from modality_adapters import AdapterLimits, get_adapter
from unirep_errors import (
    InputError,
    InputTooLargeError,
    InvalidParameterError,
    UndecodableInputError,
    UnsupportedMediaTypeError,
)

from .conftest import MALFORMED_TIME_BOUND_S, Media

U, M, L, IP = UndecodableInputError, UnsupportedMediaTypeError, InputTooLargeError, InvalidParameterError
Case = tuple[str, str, Callable[[type[Media]], bytes], dict[str, Any], type[InputError]]
RANDOM = np.random.default_rng(123).bytes(4096)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_size(w: int, h: int) -> bytes:
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + png_chunk(b"IEND", b"")


def jpeg(m: type[Media]) -> bytes:
    return m.image("JPEG", size=(64, 48))


def flip(data: bytes, start: int, length: int) -> bytes:
    return data[:start] + bytes(b ^ 0xFF for b in data[start : start + length]) + data[start + length :]


def wav_header_rate(rate: int) -> bytes:
    body = b"\x00\x00" * 1600
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(body))
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", len(body))
        + body
    )


def nan_wav(m: type[Media]) -> bytes:
    import io

    import soundfile as sf

    wave = np.zeros((16000, 1), np.float32)
    wave[100] = np.nan
    buf = io.BytesIO()
    sf.write(buf, wave, 16000, subtype="FLOAT", format="WAV")
    return buf.getvalue()


def npy_header(shape: tuple[int, ...]) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def ply_header(count: int, binary: bool = True) -> bytes:
    fmt = "binary_little_endian" if binary else "ascii"
    props = "".join(f"property float {axis}\n" for axis in "xyz")
    return f"ply\nformat {fmt} 1.0\nelement vertex {count}\n{props}end_header\n".encode()


IMAGE: list[Case] = [
    ("empty", "image", lambda m: b"", {}, U),
    ("random bytes", "image", lambda m: RANDOM, {}, M),
    ("text", "image", lambda m: b"this is not an image\n" * 20, {}, M),
    ("pdf magic", "image", lambda m: b"%PDF-1.4\n" + RANDOM[:500], {}, M),
    ("jpeg truncated to half", "image", lambda m: jpeg(m)[: len(jpeg(m)) // 2], {}, U),
    ("jpeg header only", "image", lambda m: jpeg(m)[:200], {}, U),
    ("jpeg soi only", "image", lambda m: b"\xff\xd8\xff", {}, U),
    ("png signature only", "image", lambda m: b"\x89PNG\r\n\x1a\n", {}, U),
    ("png truncated", "image", lambda m: m.image("PNG", size=(64, 64))[:300], {}, U),
    ("png corrupt idat", "image", lambda m: flip(m.image("PNG", size=(64, 64)), 60, 200), {}, U),
    ("png absurd dims", "image", lambda m: png_with_size(100_000, 100_000), {}, L),
    ("png zero width", "image", lambda m: png_with_size(0, 10), {}, U),
    ("png huge but under PIL limit", "image", lambda m: png_with_size(9000, 9000), {}, L),
    ("gif truncated", "image", lambda m: m.image("GIF", size=(64, 64), mode="P")[:40], {}, U),
    ("webp truncated", "image", lambda m: m.image("WEBP", size=(64, 64))[:60], {}, U),
    ("bmp truncated", "image", lambda m: m.image("BMP", size=(64, 64))[:100], {}, U),
    ("tiff truncated", "image", lambda m: m.image("TIFF", size=(64, 64))[:150], {}, U),
    ("over byte limit", "image", lambda m: jpeg(m) + b"\x00" * 5000, {"limits": 1000}, L),
    ("unsupported format (ico)", "image", lambda m: m.image("ICO", size=(32, 32)), {}, M),
    ("unsupported format (ppm)", "image", lambda m: m.image("PPM", size=(32, 32)), {}, M),
    ("bad param", "image", jpeg, {"input_size": -3}, IP),
    ("unknown param", "image", jpeg, {"colour": "red"}, IP),
]


def zero_tail(data: bytes, fraction: float) -> bytes:
    """PyAV writes the mp4 index (moov) last: zeroing the tail leaves frames without a way to find them."""
    cut = int(len(data) * (1 - fraction))
    return data[:cut] + b"\x00" * (len(data) - cut)


def video(m: type[Media]) -> bytes:
    return m.video(n=20, size=(64, 48))


VIDEO: list[Case] = [
    ("empty", "video", lambda m: b"", {}, U),
    ("random bytes", "video", lambda m: RANDOM, {}, M),
    ("text", "video", lambda m: b"hello world\n" * 100, {}, M),
    ("one frame mp4", "video", lambda m: m.video(n=1), {}, U),
    ("one frame webm", "video", lambda m: m.video(n=1, container="webm", codec="libvpx"), {}, U),
    ("truncated half", "video", lambda m: video(m)[: len(video(m)) // 2], {}, U),
    ("truncated 100 bytes", "video", lambda m: video(m)[:100], {}, U),
    ("ftyp box only", "video", lambda m: video(m)[:32], {}, U),
    ("moov box zeroed", "video", lambda m: zero_tail(video(m), 0.3), {}, U),
    ("webm truncated", "video", lambda m: m.video(n=20, container="webm", codec="libvpx")[:300], {}, U),
    ("webm magic only", "video", lambda m: b"\x1aE\xdf\xa3" + b"\x00" * 64, {}, U),
    ("jpeg instead of video", "video", jpeg, {}, M),
    ("wav instead of video", "video", lambda m: m.wav(seconds=0.5), {}, U),
    ("png instead of video", "video", lambda m: m.image("PNG"), {}, M),
    ("too long", "video", lambda m: m.video(n=30, fps=10), {"limits": {"max_video_seconds": 1.0}}, L),
    ("too wide", "video", video, {"limits": {"max_video_width": 32}}, L),
    ("too tall", "video", video, {"limits": {"max_video_height": 16}}, L),
    ("over byte limit", "video", video, {"limits": 100}, L),
    ("bad layout", "video", video, {"layout": "spiral"}, IP),
    ("non-square frame count", "video", video, {"num_frames": 10}, IP),
    ("bad sampling", "video", video, {"sampling": "random"}, IP),
]

AUDIO: list[Case] = [
    ("empty", "audio", lambda m: b"", {}, U),
    ("random bytes", "audio", lambda m: RANDOM, {}, M),
    ("text", "audio", lambda m: b"not audio at all\n" * 50, {}, M),
    ("riff header only", "audio", lambda m: m.wav()[:12], {}, U),
    ("wav header only", "audio", lambda m: m.wav()[:44], {}, U),
    ("wav 10 ms", "audio", lambda m: m.wav(seconds=0.01), {}, U),
    ("wav zero samples", "audio", lambda m: m.wav(seconds=0.0), {}, U),
    ("wav rate zero", "audio", lambda m: wav_header_rate(0), {}, U),
    ("wav nan samples", "audio", nan_wav, {}, U),
    ("wav corrupt fmt chunk", "audio", lambda m: flip(m.wav(), 20, 16), {}, U),
    ("flac truncated", "audio", lambda m: m.wav(fmt="FLAC", subtype="PCM_16")[:60], {}, U),
    ("flac magic only", "audio", lambda m: b"fLaC" + b"\x00" * 30, {}, U),
    ("ogg truncated", "audio", lambda m: m.wav(fmt="OGG", subtype="VORBIS")[:100], {}, U),
    ("ogg magic only", "audio", lambda m: b"OggS" + b"\x00" * 40, {}, U),
    ("mp3 sync garbage", "audio", lambda m: b"\xff\xfb" + RANDOM[:200], {}, U),
    ("id3 tag only", "audio", lambda m: b"ID3\x04\x00\x00\x00\x00\x00\x10" + b"\x00" * 16, {}, U),
    ("jpeg instead of audio", "audio", jpeg, {}, M),
    ("too long", "audio", lambda m: m.wav(seconds=2.0), {"limits": {"max_audio_seconds": 1.0}}, L),
    ("over byte limit", "audio", lambda m: m.wav(), {"limits": 1000}, L),
    ("bad param", "audio", lambda m: m.wav(), {"num_mel_bins": 0}, IP),
    ("unknown param", "audio", lambda m: m.wav(), {"rate": 8000}, IP),
]

PC = {"num_points": 64, "image_size": 16}
POINTCLOUD: list[Case] = [
    ("empty", "pointcloud", lambda m: b"", PC, U),
    ("random bytes", "pointcloud", lambda m: RANDOM, PC, M),
    ("prose", "pointcloud", lambda m: b"hello there, no points here\n", PC, M),
    ("zero points json", "pointcloud", lambda m: b"[]", PC, U),
    ("zero points npy", "pointcloud", lambda m: m.npy(np.zeros((0, 3))), PC, U),
    ("zero points ply", "pointcloud", lambda m: ply_header(0), PC, U),
    ("all nan", "pointcloud", lambda m: m.npy(np.full((10, 3), np.nan)), PC, U),
    ("all inf json", "pointcloud", lambda m: b"[[1e999, 0, 0], [0, 1e999, 0]]", PC, U),
    ("coincident points", "pointcloud", lambda m: m.npy(np.ones((50, 3))), PC, U),
    ("two columns", "pointcloud", lambda m: m.npy(np.zeros((10, 2))), PC, U),
    ("text in xyz", "pointcloud", lambda m: b"0 0 0\n1 two 3\n", PC, U),
    ("short xyz row", "pointcloud", lambda m: b"0 0 0\n1 2\n", PC, U),
    ("json strings", "pointcloud", lambda m: b'[["a", "b", "c"]]', PC, U),
    ("json ragged", "pointcloud", lambda m: b"[[0, 0, 0], [1, 2]]", PC, U),
    ("json invalid", "pointcloud", lambda m: b"[[0, 0, 0], [1, 2, ", PC, U),
    ("json object no points", "pointcloud", lambda m: b'{"pts": [[0, 0, 0]]}', PC, U),
    ("ply absurd count", "pointcloud", lambda m: ply_header(10**12) + b"\x00" * 64, PC, L),
    ("ply truncated body", "pointcloud", lambda m: ply_header(1000) + b"\x00" * 100, PC, U),
    ("ply no end_header", "pointcloud", lambda m: b"ply\nformat ascii 1.0\nelement vertex 3\n", PC, U),
    ("pcd truncated", "pointcloud", lambda m: m.open3d_file(m.cloud(200), "pcd", binary=True)[:300], PC, U),
    ("npy truncated", "pointcloud", lambda m: m.npy(m.cloud(200))[:500], PC, U),
    ("npy object dtype", "pointcloud", lambda m: m.npy(np.array([[1, 2, 3]], dtype=object)), PC, U),
    ("npy absurd shape", "pointcloud", lambda m: npy_header((9_999_999_999, 3)) + b"\x00" * 64, PC, L),
    ("off absurd count", "pointcloud", lambda m: b"OFF\n99999999999 1 0\n0 0 0\n", PC, L),
    ("off faces out of range", "pointcloud", lambda m: b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", PC, U),
    ("too many points", "pointcloud", lambda m: m.npy(m.cloud(300)), {**PC, "limits": {"max_points": 100}}, L),
    ("bad sampling", "pointcloud", lambda m: m.npy(m.cloud(300)), {"sampling": "best"}, IP),
]

TS = {"seq_len": 8, "num_vars": 2, "length_mode": "window"}
TIMESERIES: list[Case] = [
    ("empty", "timeseries", lambda m: b"", TS, U),
    ("whitespace", "timeseries", lambda m: b"  \n\n ", TS, U),
    ("binary", "timeseries", lambda m: RANDOM, TS, M),
    ("nul bytes", "timeseries", lambda m: b"1,2\x00\n3,4\n", TS, M),
    ("text in numeric column", "timeseries", lambda m: b"a,b\n" + b"1,2\n" * 5 + b"3,oops\n" + b"1,2\n" * 5, TS, U),
    ("ragged csv", "timeseries", lambda m: b"1,2\n" * 5 + b"1\n" + b"1,2\n" * 5, TS, U),
    ("header only", "timeseries", lambda m: b"a,b\n", TS, U),
    ("nan in csv", "timeseries", lambda m: b"1,2\n" * 5 + b"nan,2\n" + b"1,2\n" * 5, TS, U),
    ("inf in csv", "timeseries", lambda m: b"1,2\n" * 5 + b"inf,2\n" + b"1,2\n" * 5, TS, U),
    ("too short", "timeseries", lambda m: b"1,2\n" * 4, TS, U),
    ("wrong variable count", "timeseries", lambda m: b"1,2,3\n" * 10, TS, U),
    ("json invalid", "timeseries", lambda m: b"[[1, 2], [3, ", TS, U),
    ("json empty array", "timeseries", lambda m: b"[]", TS, U),
    ("json strings", "timeseries", lambda m: json.dumps([["1", "2"]] * 10).encode(), TS, U),
    ("json booleans", "timeseries", lambda m: json.dumps([[True, False]] * 10).encode(), TS, U),
    ("json nulls", "timeseries", lambda m: json.dumps([[None, 1]] * 10).encode(), TS, U),
    ("json ragged", "timeseries", lambda m: json.dumps([[1, 2]] * 9 + [[1]]).encode(), TS, U),
    ("json nested too deep", "timeseries", lambda m: b"[" * 100_000 + b"]" * 100_000, TS, U),
    ("json object without values", "timeseries", lambda m: b'{"series": [[1, 2]]}', TS, U),
    (
        "timestamps wrong length",
        "timeseries",
        lambda m: json.dumps({"values": [[1, 2]] * 10, "timestamps": [0]}).encode(),
        TS,
        U,
    ),
    (
        "timestamps garbage",
        "timeseries",
        lambda m: json.dumps({"values": [[1, 2]] * 10, "timestamps": ["x"] * 10}).encode(),
        TS,
        U,
    ),
    (
        "csv bad timestamp",
        "timeseries",
        lambda m: b"timestamp,a,b\n" + b"2024-01-01T00:00:00,1,2\n" * 9 + b"yesterday,1,2\n",
        TS,
        U,
    ),
    ("too long", "timeseries", lambda m: b"1,2\n" * 50, {**TS, "limits": {"max_series_length": 20}}, L),
    (
        "too many variables",
        "timeseries",
        lambda m: (",".join(["1"] * 50) + "\n").encode() * 10,
        {**TS, "limits": {"max_series_variables": 20}},
        L,
    ),
    ("latin-1 text", "timeseries", lambda m: "é,1\n".encode("latin-1") * 10, TS, M),
]

ALL_CASES = IMAGE + VIDEO + AUDIO + POINTCLOUD + TIMESERIES


def run_case(modality: str, build: Callable[[type[Media]], bytes], params: dict[str, Any]) -> None:
    params = dict(params)
    limits_spec = params.pop("limits", None)
    if isinstance(limits_spec, int):
        limits = AdapterLimits(max_bytes=limits_spec)
    else:
        limits = AdapterLimits(**(limits_spec or {}))
    get_adapter(modality, limits).decode(build(Media), **params)


def test_at_least_twenty_cases_per_modality() -> None:
    for cases in (IMAGE, VIDEO, AUDIO, POINTCLOUD, TIMESERIES):
        assert len(cases) >= 20, cases[0][1]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("name", "modality", "build", "params", "error"), ALL_CASES, ids=[f"{c[1]}-{c[0]}" for c in ALL_CASES]
)
def test_malformed_raises_typed_error_quickly(name, modality, build, params, error) -> None:
    data_built = build(Media)  # building the payload (encoding real media) is not part of the time bound
    start = time.perf_counter()
    with pytest.raises(error) as info:
        run_case(modality, lambda m: data_built, params)
    elapsed = time.perf_counter() - start
    assert elapsed < MALFORMED_TIME_BOUND_S, f"{name} took {elapsed:.2f} s"
    assert info.value.message and 400 <= info.value.status_code < 500


def _child(cases: list[tuple[str, bytes, dict[str, Any]]], queue: Any) -> None:
    outcomes = []
    for modality, data, params in cases:
        try:
            run_case(modality, lambda m, d=data: d, params)
            outcomes.append("no error")
        except InputError as exc:
            outcomes.append(type(exc).__name__)
        except Exception as exc:  # pragma: no cover - reported back as a failure
            outcomes.append(f"untyped {type(exc).__name__}")
    queue.put(outcomes)


@pytest.mark.timeout(120)
def test_no_case_crashes_a_spawned_interpreter() -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    payloads = [(modality, build(Media), params) for _, modality, build, params, _ in ALL_CASES]
    proc = ctx.Process(target=_child, args=(payloads, queue))
    proc.start()
    outcomes = queue.get(timeout=110)
    proc.join(timeout=10)
    assert proc.exitcode == 0
    for (name, modality, _, _, error), outcome in zip(ALL_CASES, outcomes, strict=True):
        assert outcome == error.__name__, (modality, name, outcome)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("modality", ["image", "audio", "video", "pointcloud", "timeseries"])
def test_fuzzed_prefixes_only_raise_typed_errors(modality) -> None:
    """Random damage to a valid file (truncation, byte flips, prepended junk) decodes or raises an InputError."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    valid = {
        "image": lambda: Media.image("PNG", size=(32, 24)),
        "audio": lambda: Media.wav(seconds=0.2),
        "video": lambda: Media.video(n=8, size=(32, 32)),
        "pointcloud": lambda: Media.open3d_file(Media.cloud(50), "ply", binary=True),
        "timeseries": lambda: Media.series_csv(t=12, v=2),
    }[modality]()
    adapter = get_adapter(modality)
    params = {"pointcloud": PC, "timeseries": TS}.get(modality, {})

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(cut=st.integers(0, len(valid)), pos=st.integers(0, len(valid) - 1), junk=st.binary(max_size=16))
    def check(cut: int, pos: int, junk: bytes) -> None:
        damaged = junk + valid[:pos] + bytes([valid[pos] ^ 0x5A]) + valid[pos + 1 : max(cut, pos + 1)]
        with contextlib.suppress(InputError):
            adapter.decode(damaged, **params)

    check()


def test_pointcloud_temp_files_are_removed() -> None:
    import glob
    import tempfile

    pattern = f"{tempfile.gettempdir()}/unirep-pc-*"
    before = set(glob.glob(pattern))
    adapter = get_adapter("pointcloud")
    adapter.decode(Media.open3d_file(Media.cloud(100), "pcd"), **PC)
    with pytest.raises(InputError):
        adapter.decode(b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nend_header\n1\n2\n", **PC)
    assert set(glob.glob(pattern)) == before
