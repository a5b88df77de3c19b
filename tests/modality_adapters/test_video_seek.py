"""The seeking video reader picks exactly the frames the general (decord) reader picks, pixel for pixel.

Clips carry their frame number drawn as binary bars, are H.264 with a known keyframe interval and B-frames, or
VP9/MPEG-4, at constant or variable frame rate; truncated and hostile files must fail exactly as before.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.frame import PictureType

from modality_adapters import get_adapter
from modality_adapters.video import VideoParams, sample_indices
from modality_adapters.video_decode import frame_table, read_sampled_frames, seek_plan
from unirep_errors import InputError

BITS = 8
STAMP = re.compile(r"\[\d\d:\d\d:\d\d\] ")
"""decord's messages start with the wall-clock time."""
W, H = 128, 96


def numbered_clip(
    n: int, gop: int = 12, codec: str = "libx264", container: str = "mp4", gaps_ms: list[int] | None = None
) -> bytes:
    """Frame i shows i as 8 vertical bars (white = 1, most significant left) over a moving texture below them.

    ``gaps_ms``: a variable frame rate, frame i lasting ``gaps_ms[i % len(gaps_ms)]`` milliseconds.
    """
    buf = io.BytesIO()
    out = av.open(buf, mode="w", format=container)
    stream = out.add_stream(codec, rate=25)
    stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
    if codec == "libx264":
        stream.options = {"g": str(gop), "keyint_min": str(gop), "bf": "3", "crf": "18", "sc_threshold": "0"}
    else:
        stream.options = {"g": str(gop)}
        stream.bit_rate = 2_000_000
    if gaps_ms:
        stream.codec_context.time_base = Fraction(1, 1000)
    yy, xx = np.mgrid[0 : H // 2, 0:W]
    pts = 0
    for i in range(n):
        arr = np.zeros((H, W, 3), np.uint8)
        for b in range(BITS):
            if (i >> (BITS - 1 - b)) & 1:
                arr[: H // 2, b * (W // BITS) : (b + 1) * (W // BITS)] = 255
        arr[H // 2 :] = ((xx * 3 + yy * 2 + 5 * i) % 200)[..., None]
        frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
        if gaps_ms:
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            pts += gaps_ms[i % len(gaps_ms)]
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return buf.getvalue()


def numbers_of(frames: np.ndarray) -> list[int]:
    """Read back the number each decoded frame shows."""
    width = frames.shape[2] // BITS
    bars = [
        frames[:, 8 : frames.shape[1] // 2 - 8, b * width + 4 : (b + 1) * width - 4].mean(axis=(1, 2, 3))
        for b in range(BITS)
    ]
    bits = (np.stack(bars, 1) > 128).astype(int)
    return [int("".join(map(str, row)), 2) for row in bits]


CLIPS = {
    "h264-gop12-bframes": lambda: numbered_clip(150, gop=12),
    "h264-gop50": lambda: numbered_clip(120, gop=50),
    "h264-vfr": lambda: numbered_clip(100, gop=10, gaps_ms=[40, 20, 60, 33]),
    "vp9-webm": lambda: numbered_clip(90, gop=15, codec="libvpx-vp9", container="webm"),
    "mpeg4-avi": lambda: numbered_clip(80, gop=20, codec="mpeg4", container="avi"),
}
PARAMS = [
    {"frame_size": 32},
    {"frame_size": 32, "sampling_rate": 1},
    {"frame_size": 32, "num_frames": 4, "sampling_rate": 2},
    {"frame_size": 32, "sampling": "uniform"},
    {"frame_size": 32, "sampling": "dense_keyframe", "num_frames": 4},
    {"frame_size": 32, "sampling_rate": 12},  # longer than every clip: the last frame (held back by B-frames)
]


def choose_for(p: VideoParams) -> Callable[[int, Sequence[int]], np.ndarray]:
    return lambda n, keyframes: sample_indices(n, p.num_frames, p.sampling, p.sampling_rate, keyframes)


@pytest.fixture(scope="module")
def clips() -> dict[str, bytes]:
    return {name: make() for name, make in CLIPS.items()}


@pytest.mark.parametrize("clip", sorted(CLIPS))
def test_seeking_reader_picks_the_same_frames_as_the_general_reader(clips: dict[str, bytes], clip: str) -> None:
    data = clips[clip]
    adapter = get_adapter("video")
    with av.open(io.BytesIO(data)) as container:
        table = frame_table(container, container.streams.video[0])
    assert table is not None and table.keyframes[0] == 0
    for params in PARAMS:
        p = VideoParams(**params)  # type: ignore[arg-type]
        fast = read_sampled_frames(data, choose_for(p), adapter.limits, threads=1)
        assert fast is not None, (clip, params)  # the seeking path itself, not its fallback
        general = adapter.read_frames_general(data, p)
        assert np.array_equal(fast, general), (clip, params)
        threaded = read_sampled_frames(data, choose_for(p), adapter.limits, threads=2)
        assert threaded is not None and np.array_equal(threaded, general), (clip, params)
        expected = sample_indices(len(table.pts), p.num_frames, p.sampling, p.sampling_rate, table.keyframes)
        assert numbers_of(fast) == [int(i) for i in expected], (clip, params)
        assert np.array_equal(adapter.read_frames(data, p), general)


def test_clips_have_b_frames_and_variable_rate_where_claimed(clips: dict[str, bytes]) -> None:
    with av.open(io.BytesIO(clips["h264-gop12-bframes"])) as container:
        kinds = {int(frame.pict_type) for frame in container.decode(video=0)}
    assert int(PictureType.B) in kinds
    with av.open(io.BytesIO(clips["h264-vfr"])) as container:
        table = frame_table(container, container.streams.video[0])
    assert table is not None
    assert len(set(np.diff(table.pts).tolist())) >= 3
    assert table.keyframes == list(range(0, 100, 10))


def test_seek_plan_skips_whole_groups_before_and_between_wanted_frames() -> None:
    keys = [0, 100, 200, 300, 400]
    assert seek_plan(keys, [250, 230, 260, 410]) == [(200, [230, 250, 260]), (400, [410])]
    assert seek_plan(keys, [50, 90, 120]) == [(0, [50, 90]), (100, [120])]
    assert seek_plan(keys, [150, 199]) == [(100, [150, 199])]
    assert seek_plan([10, 20], [5]) is None


def test_dense_keyframe_starts_the_window_at_the_nearest_fitting_keyframe() -> None:
    # 300 frames, window of 61: centred start 119; keyframes 0 and 250 -> only 0 fits (250 + 61 > 300).
    assert sample_indices(300, 16, "dense_keyframe", 4, [0, 250])[0] == 0
    assert sample_indices(300, 16, "dense_keyframe", 4, [0, 60, 120, 180])[0] == 120
    assert sample_indices(300, 16, "dense_keyframe", 4, [0, 100, 138])[0] == 100  # tie 19 vs 19: the earlier
    assert list(sample_indices(300, 16, "dense_keyframe", 4, [])) == list(sample_indices(300, 16, "dense", 4))


def faststart(data: bytes, tmp_path: Path) -> bytes:
    """The same packets with the index first (as streaming sites serve MP4): a cut file still opens."""
    path = tmp_path / "faststart.mp4"
    options = {"movflags": "faststart"}
    with av.open(io.BytesIO(data)) as src, av.open(str(path), "w", format="mp4", options=options) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(video=0):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    return path.read_bytes()


def cut_by_stream_copy(data: bytes, tmp_path: Path) -> bytes:
    """``ffmpeg -ss 1.3 -c copy``: starts at the keyframe before 1.3 s, an edit list hides the frames up to it."""
    source, cut = tmp_path / "source.mp4", tmp_path / "cut.mp4"
    source.write_bytes(data)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", "1.3", "-i", str(source), "-c", "copy", str(cut)], check=True)
    return cut.read_bytes()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_an_edit_list_that_hides_frames_is_left_to_the_general_reader(clips: dict[str, bytes], tmp_path: Path) -> None:
    data = cut_by_stream_copy(clips["h264-gop12-bframes"], tmp_path)
    with av.open(io.BytesIO(data)) as container:
        assert any(packet.is_discard for packet in container.demux(video=0))
    adapter = get_adapter("video")
    for params in PARAMS:
        p = VideoParams(**params)  # type: ignore[arg-type]
        assert read_sampled_frames(data, choose_for(p), adapter.limits, threads=1) is None
        assert np.array_equal(adapter.read_frames(data, p), adapter.read_frames_general(data, p))


def hostile(clips: dict[str, bytes], tmp_path: Path) -> dict[str, bytes]:
    good = clips["h264-gop12-bframes"]
    moov = good.find(b"moov")
    indexed_first = faststart(good, tmp_path)
    assert indexed_first.find(b"moov") < indexed_first.find(b"mdat")
    return {
        **{f"faststart-cut-{f}": indexed_first[: int(len(indexed_first) * f)] for f in (0.3, 0.6, 0.9)},
        "truncated-half": good[: len(good) // 2],
        "truncated-tail": good[: len(good) - 200],
        "no-header": good[moov + 200 :],
        "garbage-after-ftyp": good[:32] + bytes(range(256)) * 8,
        "webm-truncated": clips["vp9-webm"][: len(clips["vp9-webm"]) // 3],
        "random": np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
    }


def test_hostile_files_fail_as_the_general_reader_fails(clips: dict[str, bytes], tmp_path: Path) -> None:
    adapter = get_adapter("video")
    p = VideoParams(frame_size=32)
    for name, data in hostile(clips, tmp_path).items():
        try:
            expected: object = adapter.read_frames_general(data, p)
        except InputError as exc:
            expected = (type(exc), STAMP.sub("", str(exc)))
        try:
            got: object = adapter.read_frames(data, p)
        except InputError as exc:
            got = (type(exc), STAMP.sub("", str(exc)))
        if isinstance(expected, np.ndarray):
            assert isinstance(got, np.ndarray) and np.array_equal(got, expected), name
        else:
            assert got == expected, name
