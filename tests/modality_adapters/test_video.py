"""Video adapter: MP4 and WebM decode; both layouts are proven with frames of distinct constant values."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

from modality_adapters import IMAGENET_MEAN, IMAGENET_STD, AdapterLimits, get_adapter
from modality_adapters.video import VideoParams, clip_to_map, fitting_rate, map_to_clip, sample_indices
from unirep_errors import InputTooLargeError, UndecodableInputError

# Distinct grey levels, far enough apart that codec noise (a few levels) cannot confuse two frames.
LEVELS = [16 + 14 * t for t in range(16)]


def grey_of(block: torch.Tensor) -> float:
    """Undo the ImageNet normalization of a 3 x h x w block and return its mean grey level (0..255)."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return float(((block * std + mean) * 255).mean())


@pytest.mark.parametrize(
    ("container", "codec"), [("mp4", "libx264"), ("mp4", "mpeg4"), ("webm", "libvpx"), ("webm", "libvpx-vp9")]
)
@pytest.mark.parametrize(("n", "size"), [(12, (64, 48)), (40, (48, 80)), (70, (96, 64))])
def test_containers_lengths_sizes(media, container, codec, n, size) -> None:
    adapter = get_adapter("video")
    data = media.video(n=n, size=size, container=container, codec=codec)
    out = adapter.decode(data, frame_size=32)
    assert out.shape == (3, 128, 128) == adapter.output_shape(frame_size=32)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize(("container", "codec"), [("mp4", "libx264"), ("webm", "libvpx-vp9")])
def test_grid_layout_puts_frame_t_at_tile(media, container, codec) -> None:
    data = media.video(values=LEVELS, size=(64, 48), container=container, codec=codec)
    s = 32
    out = get_adapter("video").decode(data, frame_size=s, layout="grid", sampling_rate=1)
    for t, level in enumerate(LEVELS):
        r, c = t // 4, t % 4
        tile = out[:, r * s : (r + 1) * s, c * s : (c + 1) * s]
        assert abs(grey_of(tile) - level) < 4, (t, grey_of(tile), level)


@pytest.mark.parametrize(("container", "codec"), [("mp4", "mpeg4"), ("webm", "libvpx")])
def test_official_reshape_layout_puts_frame_t_in_row_band(media, container, codec) -> None:
    data = media.video(values=LEVELS, size=(64, 48), container=container, codec=codec)
    s = 32
    out = get_adapter("video").decode(data, frame_size=s, layout="official_reshape", sampling_rate=1)
    band = s * s // (4 * s)  # = s / 4 rows of the 4s-wide canvas per frame
    for t, level in enumerate(LEVELS):
        assert abs(grey_of(out[:, t * band : (t + 1) * band, :]) - level) < 4


def test_layouts_exactly_on_constant_clips() -> None:
    c, t, h, w = 3, 16, 8, 12
    clip = torch.arange(t, dtype=torch.float32).view(1, t, 1, 1).expand(c, t, h, w).contiguous()
    clip = clip + torch.arange(c).view(c, 1, 1, 1) * 100
    grid = clip_to_map(clip, "grid")
    assert grid.shape == (c, 4 * h, 4 * w)
    for k in range(t):
        tile = grid[:, (k // 4) * h : (k // 4 + 1) * h, (k % 4) * w : (k % 4 + 1) * w]
        assert torch.equal(tile, clip[:, k])
    official = clip_to_map(clip, "official_reshape")
    assert torch.equal(official, clip.reshape(c, 4 * h, 4 * w))
    rows = h * w // (4 * w)  # each frame fills h / 4 full-width rows of the canvas
    for k in range(t):
        for ch in range(c):
            assert torch.all(official[ch, k * rows : (k + 1) * rows] == k + 100 * ch)


def test_channels_layout_stacks_frames_as_channels(media) -> None:
    clip = torch.randn(3, 9, 6, 10)
    stacked = clip_to_map(clip, "channels")
    assert stacked.shape == (27, 6, 10)
    for t in range(9):
        assert torch.equal(stacked[3 * t : 3 * t + 3], clip[:, t])  # frame t is channels 3t..3t+2
    adapter = get_adapter("video")
    params = {"frame_size": 16, "num_frames": 4, "layout": "channels"}
    assert adapter.output_shape(**params) == (12, 16, 16)
    out = adapter.decode(media.video(values=LEVELS[:4], size=(32, 32)), sampling_rate=1, **params)
    assert out.shape == (12, 16, 16)
    assert [round(grey_of(out[3 * t : 3 * t + 3])) for t in range(4)] == pytest.approx(LEVELS[:4], abs=4)
    assert adapter.preview(out, **params).startswith(b"\x89PNG")  # shown as the mosaic of its frames


@pytest.mark.parametrize("layout", ["grid", "official_reshape", "channels"])
def test_map_to_clip_inverts_every_layout(layout: str) -> None:
    clip = torch.randn(3, 4, 16, 16)
    params = VideoParams(num_frames=4, frame_size=16, layout=layout)
    assert torch.equal(map_to_clip(clip_to_map(clip, layout), params), clip)


def test_official_reshape_on_random_clip_matches_reference() -> None:
    clip = torch.randn(3, 9, 6, 10)
    assert torch.equal(clip_to_map(clip, "official_reshape"), clip.reshape(3, 18, 30))
    grid = clip_to_map(clip, "grid")
    assert torch.equal(grid[:, 6:12, 20:30], clip[:, 5])  # frame 5 of 9 at tile (1, 2)


def test_sample_indices() -> None:
    assert sample_indices(100, 16, "dense", 4).tolist() == list(range(19, 83, 4))  # centred 61-frame window
    short = sample_indices(20, 16, "dense", 4).tolist()
    assert short[:5] == [0, 4, 8, 12, 16] and short[5:] == [19] * 11
    assert sample_indices(160, 16, "uniform", 4).tolist() == list(range(5, 160, 10))
    assert sample_indices(3, 4, "uniform", 4).tolist() == [0, 1, 1, 2]


def test_uniform_sampling_sees_the_whole_clip(media) -> None:
    levels = [16 + 7 * i for i in range(32)]
    data = media.video(values=levels, size=(32, 32))
    out = get_adapter("video").decode(data, frame_size=16, layout="grid", sampling="uniform", num_frames=4)
    seen = [grey_of(out[:, (k // 2) * 16 : (k // 2 + 1) * 16, (k % 2) * 16 : (k % 2 + 1) * 16]) for k in range(4)]
    expected = [levels[i] for i in sample_indices(32, 4, "uniform", 4)]
    assert np.allclose(seen, expected, atol=4)


def test_one_frame_video_is_refused_clearly(media) -> None:
    with pytest.raises(UndecodableInputError, match="1 decodable frame; need at least 2"):
        get_adapter("video").decode(media.video(n=1))


def test_library_log_prefixes_stay_out_of_the_message() -> None:
    """decord reports some failures as a log line (wall-clock time, its source path and line): the client gets
    the reason alone, so equal failures give equal messages."""
    avi_without_a_stream = b"RIFF\x00\x10\x00\x00AVI LIST" + b"\x02" * 3000
    with pytest.raises(UndecodableInputError) as caught:
        get_adapter("video").decode(avi_without_a_stream)
    message = str(caught.value)
    assert message.startswith("video cannot be opened (truncated or corrupt): ")
    assert not re.search(r"\[\d{2}:\d{2}:\d{2}\]|\.cc:\d+|/github/|0x[0-9a-f]{6,}", message), message


def test_resolution_and_duration_limits(media) -> None:
    data = media.video(n=30, size=(64, 48), fps=10)
    with pytest.raises(InputTooLargeError, match="64 x 48"):
        get_adapter("video", AdapterLimits(max_video_width=32)).decode(data, frame_size=16)
    with pytest.raises(InputTooLargeError, match=r"3\.0 s"):
        get_adapter("video", AdapterLimits(max_video_seconds=2.0)).decode(data, frame_size=16)


def test_preview_png(media) -> None:
    adapter = get_adapter("video")
    out = adapter.decode(media.video(values=LEVELS), frame_size=16, layout="grid", sampling_rate=1)
    image = Image.open(io.BytesIO(adapter.preview(out)))
    assert image.size == (64, 64)
    px = np.asarray(image.convert("L")).astype(int)
    assert abs(px[8, 8] - LEVELS[0]) < 5 and abs(px[56, 56] - LEVELS[15]) < 5


# --- layouts where motion is local ---------------------------------------------------------------------------------


def _sliding_bar(level: float, background: float, dx: int = 1, dy: int = 0, t: int = 4, size: int = 24) -> torch.Tensor:
    """(3, T, H, W): a 4-pixel bar (or square patch) of ``level`` moving by (dx, dy) a frame over ``background``."""
    clip = torch.full((3, t, size, size), background)
    for k in range(t):
        x, y = 8 + dx * k, 8 + dy * k
        clip[:, k, y : y + 6, x : x + 4] = level
    return clip


@pytest.mark.parametrize(("level", "background"), [(1.5, -1.0), (-1.0, 1.5)])
def test_motion_flow_sign_is_the_direction_whatever_the_contrast(level: float, background: float) -> None:
    t = 4
    for (dx, dy), (channel, sign) in {(1, 0): (0, 1), (-1, 0): (0, -1), (0, 1): (1, 1), (0, -1): (1, -1)}.items():
        out = clip_to_map(_sliding_bar(level, background, dx, dy, t), "motion")
        assert out.shape == (3 + 2 * (t - 1), 24, 24)
        flow_x, flow_y = out[3 : 3 + t - 1], out[3 + t - 1 :]
        along, across = (flow_x, flow_y) if channel == 0 else (flow_y, flow_x)
        assert sign * float(along.sum()) > 1.0, (dx, dy)  # the sign says where the bar went
        assert abs(float(across.sum())) < 1e-4, (dx, dy)  # nothing moved the other way


def test_motion_layout_keeps_the_middle_frame_and_is_still_on_a_still_clip() -> None:
    clip = torch.randn(3, 4, 16, 16)
    out = clip_to_map(clip, "motion")
    assert torch.equal(out[:3], clip[:, 2])
    still = clip[:, :1].expand(3, 4, 16, 16).contiguous()
    assert torch.equal(clip_to_map(still, "motion")[3:], torch.zeros(6, 16, 16))
    with pytest.raises(ValueError, match="one frame"):
        map_to_clip(out, VideoParams(num_frames=4, frame_size=16, layout="motion"))


def test_frames_diffs_layout_is_the_frames_then_their_differences() -> None:
    clip = torch.randn(3, 4, 16, 16)
    out = clip_to_map(clip, "frames_diffs")
    assert out.shape == (12 + 9, 16, 16)
    assert torch.equal(out[:12], clip_to_map(clip, "channels"))
    for k in range(3):
        torch.testing.assert_close(out[12 + 3 * k : 15 + 3 * k], clip[:, k + 1] - clip[:, k])
    assert torch.equal(map_to_clip(out, VideoParams(num_frames=4, frame_size=16, layout="frames_diffs")), clip)


@pytest.mark.parametrize("layout", ["motion", "frames_diffs"])
def test_derived_layouts_train_from_the_clip_and_serve_the_same_map(media, layout: str) -> None:
    adapter = get_adapter("video")
    params = {"frame_size": 16, "num_frames": 4, "sampling_rate": 1, "layout": layout}
    data = media.video(n=8, size=(32, 32))
    served = adapter.decode(data, **params)
    assert served.shape == adapter.output_shape(**params)
    cached = adapter.decode_for_training(data, **params)
    assert cached.shape == (12, 16, 16)  # the clip (frames as channels), so augmentation acts on frames
    assert torch.equal(adapter.training_input(cached, **params), served)
    augmented = adapter.augment(cached, torch.Generator().manual_seed(0), **params)
    assert augmented.shape == served.shape and not torch.equal(augmented, served)
    assert adapter.preview(served, **params).startswith(b"\x89PNG")


def test_fitting_rate_is_the_largest_up_to_the_served_one_whose_window_fits() -> None:
    assert [fitting_rate(n, 16, 4) for n in (8, 16, 30, 31, 45, 46, 61, 500)] == [1, 1, 1, 2, 2, 3, 4, 4]


def test_training_reads_every_frame_of_clips_shorter_than_the_dense_window(media) -> None:
    adapter = get_adapter("video")
    served = adapter.default_params()  # 16 frames 4 apart: a window of 61
    short, middling, long = (media.video(n=n, size=(32, 32)) for n in (20, 40, 64))
    assert adapter.fit_file_params([short, short, long], served, {})["sampling_rate"] == 1  # median 20 frames
    assert adapter.fit_file_params(iter([middling]), served, {})["sampling_rate"] == 2  # 16 frames 2 apart span 31
    assert adapter.fit_file_params([long], served, {})["sampling_rate"] == 4
    assert adapter.fit_file_params([short], {**served, "sampling_rate": 4}, {"sampling_rate": 4})["sampling_rate"] == 4
    uniform = {**served, "sampling": "uniform"}
    assert adapter.fit_file_params([short], uniform, {}) == uniform  # uniform sampling spreads over any length
    assert adapter.fit_file_params([b"not a video", b""], served, {}) == served  # nothing to measure: as served
    fitted = adapter.fit_file_params([short], served, {})
    clip = adapter.decode(short, **{**fitted, "frame_size": 16, "layout": "channels"}).reshape(16, 3, 16, 16)
    assert all(not torch.equal(clip[k], clip[k + 1]) for k in range(15))  # no frame read twice


def test_served_default_layout_is_official_and_training_opts_into_motion() -> None:
    adapter = get_adapter("video")
    assert adapter.default_params()["layout"] == "official_reshape"
    assert adapter.training_params() == {"layout": "motion"}
