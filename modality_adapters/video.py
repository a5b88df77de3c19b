"""Video adapter: a clip of frames laid out as one image, the way the official UniRepLKNet video model sees it.

Official pipeline (``Video/``, VideoMAE-derived): decord reads the clip, 16 frames are taken densely with a
sampling rate of 4, the short side is resized to 224 (bilinear), centre-cropped to 224, ImageNet-normalized into
(C, T, H, W), and the model input is ``reshape(C, 4H, 4W)``. How the clip becomes the map is the ``layout``
(``video_maps``): ``official_reshape`` (the served default, for official-style checkpoints), ``grid`` (a visual
mosaic), and the channel layouts for models trained here, in which motion is local for a convolution:
``channels`` (frames as channels), ``frames_diffs`` (and their differences) and ``motion`` (the middle frame and
normal-flow-like products of temporal and spatial gradients). ``TRAINING_DEFAULTS`` is what ``unirep train``
uses unless the run says otherwise, chosen by measurement on clips told apart only by motion and only by
appearance; training also reads clips shorter than the dense window at a sampling rate that fits them
(``fit_file_params``).

Validation uses the centre window (the official validation draws it at random; a service must be
deterministic). ``uniform`` sampling takes the centres of T equal segments of the whole clip instead.
``dense_keyframe`` (opt-in, for speed) moves the dense window to start at the keyframe nearest the centred start,
so decoding starts at the window instead of at the keyframe before it (up to a whole GOP earlier).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from unirep_errors import InputTooLargeError, UndecodableInputError, UnsupportedMediaTypeError

from .base import IMAGENET_MEAN, IMAGENET_STD, AdapterLimits, BaseAdapter, as_chw, encode_png
from .serving import ServingDefaults
from .training_augment import augment_video_clip
from .video_decode import frame_count, library_reason, probe_resolution, read_frames_pyav, read_sampled_frames
from .video_maps import (
    CHANNEL_LAYOUTS,
    CLIP_FORM,
    DERIVED_LAYOUTS,
    LAYOUTS,
    clip_to_map,
    layout_channels,
    map_to_clip,
)

__all__ = ["VideoAdapter", "VideoParams", "clip_to_map", "fitting_rate", "map_to_clip", "sample_indices"]

TRAINING_DEFAULTS: dict[str, Any] = {"layout": "motion"}
"""What ``unirep train`` uses unless the run sets it (see ``benchmarks/RESULTS.md``)."""
SAMPLINGS = ("dense", "uniform", "dense_keyframe")
COLOURS = ("jitter", "none")
"""What training augmentation does to a clip's colours: ``colour_jitter`` it, or keep them."""
_VIDEO_MAGICS: tuple[bytes, ...] = (b"\x1aE\xdf\xa3", b"RIFF", b"OggS", b"FLV", b"\x00\x00\x01\xba", b"\x47")


@dataclass(frozen=True)
class VideoParams:
    num_frames: int = 16
    frame_size: int = 224
    sampling: str = "dense"
    sampling_rate: int = 4
    layout: str = "official_reshape"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    colour: str = "jitter"
    """Training only: ``jitter`` the colours of each clip (brightness, contrast, saturation, hue by up to 36
    degrees; ``colour_jitter``), or ``none`` where the exact colour is the label."""

    def __post_init__(self) -> None:
        if (
            not isinstance(self.num_frames, int)
            or self.num_frames < 4
            or math.isqrt(self.num_frames) ** 2 != (self.num_frames)
        ):
            raise ValueError(f"num_frames must be a square number >= 4 (4, 9, 16, ...), got {self.num_frames!r}")
        if not isinstance(self.frame_size, int) or not 16 <= self.frame_size <= 1024:
            raise ValueError(f"frame_size must be an int in [16, 1024], got {self.frame_size!r}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if not isinstance(self.sampling_rate, int) or not 1 <= self.sampling_rate <= 64:
            raise ValueError(f"sampling_rate must be an int in [1, 64], got {self.sampling_rate!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.colour not in COLOURS:
            raise ValueError(f"colour must be one of {COLOURS}, got {self.colour!r}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))


class VideoAdapter(BaseAdapter[VideoParams]):
    """MP4 (H.264, MPEG-4, ...), WebM (VP8/VP9), AVI, MKV via decord -> 3 x (g * size) x (g * size), g^2 frames."""

    name: ClassVar[str] = "video"
    params_type: ClassVar[type[Any]] = VideoParams
    heavy_imports: ClassVar[tuple[str, ...]] = ("av", "decord")
    serving: ClassVar[ServingDefaults] = ServingDefaults(label_set="kinetics-400", max_batch_size=4, max_delay_ms=10.0)
    small_params: ClassVar[dict[str, Any]] = {"frame_size": 32}
    training_choices: ClassVar[tuple[str, ...]] = ("layout", "colour", "sampling_rate")

    def __init__(self, limits: AdapterLimits | None = None, num_threads: int = 1) -> None:
        super().__init__(limits)
        self.num_threads = num_threads
        """decord decoding threads; one per worker process keeps a pool from oversubscribing the CPU."""

    def output_shape(self, **params: Any) -> tuple[int, int, int]:
        p = self.resolve_params(**params)
        if p.layout in CHANNEL_LAYOUTS:
            return (layout_channels(p.layout, p.num_frames), p.frame_size, p.frame_size)
        side = math.isqrt(p.num_frames) * p.frame_size
        return (3, side, side)

    @classmethod
    def training_params(cls) -> dict[str, Any]:
        return dict(TRAINING_DEFAULTS)

    def fit_file_params(self, files: Iterable[bytes], params: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
        """The dense sampling rate from the training clips' typical (median) length, where the run did not set it:
        at the served rate of 4, 16 frames span 61, and a shorter clip gives a few frames and its last one repeated
        (on 16-frame clips, 4 frames and the last 12 times), which leaves a motion map little motion to show."""
        p = self.resolve_params(**params)
        if "sampling_rate" in given or p.sampling == "uniform":
            return params
        lengths = [n for n in (frame_count(data) for data in files) if n]
        if not lengths:
            return params
        return {**params, "sampling_rate": fitting_rate(int(np.median(lengths)), p.num_frames, p.sampling_rate)}

    def _decode(self, data: bytes, p: VideoParams) -> torch.Tensor:
        frames = self.read_frames(data, p)
        clip = frames_to_clip(frames, p)
        return clip_to_map(clip, p.layout)

    def read_frames(self, data: bytes, p: VideoParams) -> np.ndarray:
        """Decode only the sampled frames (T, H, W, 3): the seeking reader first, the general reader otherwise."""

        def choose(n: int, keyframes: Sequence[int]) -> np.ndarray:
            return sample_indices(n, p.num_frames, p.sampling, p.sampling_rate, keyframes)

        frames = read_sampled_frames(data, choose, self.limits, self.num_threads)
        if frames is None:
            frames = self.read_frames_general(data, p)
        if frames.ndim != 4 or frames.shape[0] != p.num_frames or frames.shape[-1] != 3 or 0 in frames.shape:
            raise UndecodableInputError(f"video decoded to an unexpected frame array of shape {frames.shape}")
        return frames

    def read_frames_general(self, data: bytes, p: VideoParams) -> np.ndarray:
        """Open from memory with decord, check duration and resolution, decode the sampled frames."""
        with contextlib.suppress(ImportError):
            import av  # noqa: F401 - load PyAV's FFmpeg before decord's, so both keep working in this process
        import decord

        try:
            reader = decord.VideoReader(io.BytesIO(data), ctx=decord.cpu(0), num_threads=self.num_threads)
        except Exception as exc:
            if not _looks_like_video(data):
                raise UnsupportedMediaTypeError(
                    "not a recognised video container; send MP4, WebM, MKV or AVI",
                    supported=["mp4", "webm", "mkv", "avi"],
                ) from exc
            raise UndecodableInputError(
                f"video cannot be opened (truncated or corrupt): {library_reason(exc)}"
            ) from exc
        n = len(reader)
        if n < 2:
            raise UndecodableInputError(f"video has {n} decodable frame{'s' * (n != 1)}; need at least 2", frames=n)
        fps = float(reader.get_avg_fps())
        if math.isfinite(fps) and fps > 0 and n / fps > self.limits.max_video_seconds:
            raise InputTooLargeError(
                f"video is {n / fps:.1f} s long; the limit is {self.limits.max_video_seconds:g} s",
                seconds=round(n / fps, 3),
                limit=self.limits.max_video_seconds,
            )
        keyframes: Sequence[int] = ()
        if p.sampling == "dense_keyframe":
            with contextlib.suppress(Exception):
                keyframes = [int(k) for k in reader.get_key_indices()]
        indices = sample_indices(n, p.num_frames, p.sampling, p.sampling_rate, keyframes)
        self._check_resolution(*probe_resolution(data))
        try:
            frames = reader.get_batch(list(indices)).asnumpy()
            self._check_resolution(int(frames.shape[2]), int(frames.shape[1]))
        except InputTooLargeError:
            raise
        except Exception as exc:
            # decord 0.6.0 mis-strides frames of some widths (e.g. 48 or 72 px) and then fails the copy; PyAV
            # decodes those correctly, so it takes over rather than refusing a valid video.
            frames = read_frames_pyav(data, indices, exc, self._check_resolution)
        return frames

    def _check_resolution(self, width: int, height: int) -> None:
        if width > self.limits.max_video_width or height > self.limits.max_video_height:
            raise InputTooLargeError(
                f"video is {width} x {height}; the limit is {self.limits.max_video_width} x "
                f"{self.limits.max_video_height}",
                width=width,
                height=height,
            )

    def preview(self, tensor: torch.Tensor, **params: Any) -> bytes:
        """The map as the model sees it, de-normalized to RGB (an ``official_reshape`` map shows its strips); the
        channel layouts as the mosaic of their frames, a ``motion`` map as its frame beside its flow (grey)."""
        p = self.resolve_params(**params)
        tensor = torch.as_tensor(tensor)
        flow: np.ndarray | None = None
        if p.layout == "motion":
            chw = as_chw(tensor, "video")
            tensor, flow = torch.from_numpy(chw[:3]), chw[3:]
        elif p.layout in CHANNEL_LAYOUTS:
            tensor = clip_to_map(map_to_clip(tensor, p), "grid")
        chw = as_chw(tensor, "video")
        mean = np.asarray(p.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(p.std, dtype=np.float32)[:, None, None]
        rgb = np.clip(np.rint((chw * std + mean) * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)
        if flow is not None:  # each flow plane on a grey scale, 0 at mid-grey, beside the frame
            scale = max(float(np.abs(flow).max()), 1e-6)
            planes = [np.clip(np.rint(128 + 127 * f / scale), 0, 255).astype(np.uint8) for f in flow]
            rgb = np.concatenate([rgb, *(np.repeat(f[..., None], 3, axis=2) for f in planes)], axis=1)
        return encode_png(rgb)

    def decode_for_training(self, data: bytes, **params: Any) -> torch.Tensor:
        """The map, or for layouts derived from the frames the clip in ``CLIP_FORM``, so augmentation acts on frames."""
        p = self.resolve_params(**params)
        if p.layout in DERIVED_LAYOUTS:
            return self.decode(data, **{**params, "layout": CLIP_FORM})
        return self.decode(data, **params)

    def training_input(self, cached: torch.Tensor, **params: Any) -> torch.Tensor:
        p = self.resolve_params(**params)
        return clip_to_map(self._cached_clip(cached, p), p.layout) if p.layout in DERIVED_LAYOUTS else cached

    def augment(self, cached: torch.Tensor, generator: torch.Generator, **params: Any) -> torch.Tensor:
        """Training only: the cached clip, temporal jitter, a random crop, the colours jittered (``colour``), and
        the map again."""
        p = self.resolve_params(**params)
        normalization = (p.mean, p.std) if p.colour == "jitter" else None
        return clip_to_map(augment_video_clip(self._cached_clip(cached, p), generator, normalization), p.layout)

    @staticmethod
    def _cached_clip(cached: torch.Tensor, p: VideoParams) -> torch.Tensor:
        if p.layout in DERIVED_LAYOUTS:
            return map_to_clip(cached, VideoParams(num_frames=p.num_frames, frame_size=p.frame_size, layout=CLIP_FORM))
        return map_to_clip(cached, p)


def _looks_like_video(data: bytes) -> bool:
    return data[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide") or data.startswith(_VIDEO_MAGICS)


def sample_indices(
    n: int, num_frames: int, sampling: str, sampling_rate: int, keyframes: Sequence[int] = ()
) -> np.ndarray:
    """Frame indices to decode.

    ``dense``: ``num_frames`` frames ``sampling_rate`` apart, window centred in the clip; a clip shorter than the
    window keeps the stride and repeats its last frame (as the official loader pads short clips).
    ``uniform``: the centre frame of each of ``num_frames`` equal segments of the whole clip.
    ``dense_keyframe``: the dense window, started at the keyframe (of ``keyframes``) nearest the centred start
    among those where the whole window still fits; the centred start when there is none.
    """
    if sampling == "uniform":
        idx = np.floor((np.arange(num_frames) + 0.5) * n / num_frames)
    else:
        span = (num_frames - 1) * sampling_rate + 1
        start = max(0, (n - span) // 2)
        if sampling == "dense_keyframe":
            fitting = [int(k) for k in keyframes if 0 <= k <= max(0, n - span)]
            start = min(fitting, key=lambda k: (abs(k - start), k), default=start)
        idx = start + np.arange(num_frames) * sampling_rate
    return np.clip(idx, 0, n - 1).astype(np.int64)


def fitting_rate(length: int, num_frames: int, rate: int) -> int:
    """The largest sampling rate up to ``rate`` at which ``num_frames`` frames fit in a clip of ``length`` (at least 1:
    a clip shorter than ``num_frames`` repeats its last frame whatever the rate)."""
    return max(1, min(rate, (length - 1) // (num_frames - 1)))


def frames_to_clip(frames: np.ndarray, p: VideoParams) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, S, S) float32: short side to S (bilinear), centre crop, ImageNet norm."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)  # T, 3, H, W uint8, channels-last in memory
    height, width = x.shape[-2:]
    size = p.frame_size
    if width <= height:
        new_w, new_h = size, int(size * height / width)
    else:
        new_w, new_h = int(size * width / height), size
    if (new_h, new_w) != (height, width):
        # cv2.INTER_LINEAR semantics (half-pixel centres, no antialias, uint8 result), which the official numpy
        # path uses; torch's uint8 channels-last kernel is also ~10x faster than resizing full frames in float.
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=False)
    top = round((new_h - size) / 2.0)
    left = round((new_w - size) / 2.0)
    x = x[:, :, top : top + size, left : left + size]
    mean = torch.tensor(p.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(p.std, dtype=torch.float32).view(1, 3, 1, 1)
    x = (x.to(torch.float32) / 255.0 - mean) / std
    return x.permute(1, 0, 2, 3).contiguous()
