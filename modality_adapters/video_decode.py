"""Decoding only what a sample needs: a frame table read from the packets, seeks to keyframes, threaded decoding.

Reading every frame from the start up to the last sampled one costs most of a video request. The packets alone
(no decoding) give each frame's presentation timestamp and which frames are keyframes, so frame number ``i`` is
the ``i``-th smallest timestamp, exactly as an indexing reader numbers frames. For each wanted frame we seek to
the last keyframe at or before it when that keyframe lies beyond what has been decoded, and decode forward from
there; frames are identified by timestamp, so B-frames and variable frame rates change nothing.

Frames that nothing references and nobody wants are not decoded at all. Threads are optional (one by default:
the service runs one decoder process per core instead).

This path vouches only for what it can check: anything unusual (a packet without a timestamp, one an edit list
hides or the demuxer marks corrupt, duplicate timestamps, fewer packets than the container's index lists, a
decoder that skips a wanted frame, a stream over a limit, any library error) returns None and the caller takes
its general path, which also produces the user-facing errors.

Also here: the header probe and the PyAV reader that the general path falls back on, and ``library_reason``, which
turns a decoding library's exception into the reason a client reads.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from unirep_errors import InputTooLargeError, UndecodableInputError

from .base import AdapterLimits

__all__ = [
    "FrameTable",
    "frame_count",
    "frame_table",
    "library_reason",
    "probe_resolution",
    "read_frames_pyav",
    "read_sampled_frames",
    "seek_plan",
]

ChooseFrames = Callable[[int, Sequence[int]], np.ndarray]
"""(frame count, keyframe numbers) -> frame numbers to decode."""


@dataclass(frozen=True)
class FrameTable:
    """Presentation timestamps of every frame in display order (index = frame number) and the keyframes' numbers."""

    pts: list[int]
    keyframes: list[int]


@contextlib.contextmanager
def _video_stream(data: bytes) -> Iterator[tuple[Any, Any]]:
    """The PyAV container read from memory and its first video stream (every reader here starts with these)."""
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        yield container, container.streams.video[0]


def frame_table(container: Any, stream: Any) -> FrameTable | None:
    """Demux (not decode) the whole stream; None when frames cannot be numbered by timestamp unambiguously."""
    stamps: list[int] = []
    key_stamps: list[int] = []
    for packet in container.demux(stream):
        if packet.size == 0:
            continue  # the demuxer's end-of-stream marker
        if packet.pts is None or packet.is_discard or packet.is_corrupt:
            return None  # unnumbered, hidden by an edit list, or damaged: numbering is the general reader's call
        stamps.append(int(packet.pts))
        if packet.is_keyframe:
            key_stamps.append(int(packet.pts))
    ordered = sorted(stamps)
    if len(set(ordered)) != len(ordered):
        return None
    number = {pts: i for i, pts in enumerate(ordered)}
    return FrameTable(ordered, sorted(number[pts] for pts in key_stamps))


def frame_count(data: bytes) -> int | None:
    """Frames in the video, from the container's count or its packets (no decoding); None where neither says."""
    try:
        with _video_stream(data) as (container, stream):
            if stream.frames:
                return int(stream.frames)
            table = frame_table(container, stream)
            return len(table.pts) if table is not None and table.pts else None
    except Exception:
        return None


def read_sampled_frames(data: bytes, choose: ChooseFrames, limits: AdapterLimits, threads: int) -> np.ndarray | None:
    """The chosen frames as (T, H, W, 3) uint8 RGB, or None when this path cannot vouch for them (see above)."""
    try:
        with _video_stream(data) as (container, stream):
            ctx = stream.codec_context
            if not _within(int(ctx.width), int(ctx.height), limits):
                return None
            table = frame_table(container, stream)
            if table is None or len(table.pts) < 2 or (stream.frames and stream.frames != len(table.pts)):
                return None  # a count unlike the container's own (e.g. a truncated file) is the general path's call
            fps = float(stream.average_rate or 0)
            if not fps > 0 or len(table.pts) / fps > limits.max_video_seconds:
                return None
            indices = choose(len(table.pts), table.keyframes)
            stream.thread_type = "AUTO" if threads > 1 else "NONE"
            ctx.thread_count = max(1, threads)
            found = _decode_at(container, stream, table, [table.pts[int(i)] for i in indices], limits)
            if found is None:
                return None
            return np.stack([found[table.pts[int(i)]] for i in indices])
    except Exception:
        return None


def seek_plan(key_pts: Sequence[int], wanted: Sequence[int]) -> list[tuple[int, list[int]]] | None:
    """Where to seek and which wanted timestamps to decode from there, in order; None if one has no keyframe before.

    Decoding forward stops at each wanted frame, so a new seek pays only when the keyframe before the next wanted
    frame lies after the last one decoded; otherwise decoding simply goes on.
    """
    plan: list[tuple[int, list[int]]] = []
    last = None
    for target in sorted(set(wanted)):
        k = bisect.bisect_right(key_pts, target) - 1
        if k < 0:
            return None  # only a sequential decode from the start could say what this frame is
        if last is None or key_pts[k] > last:
            plan.append((key_pts[k], []))
        plan[-1][1].append(target)
        last = target
    return plan


def _decode_at(
    container: Any, stream: Any, table: FrameTable, wanted: list[int], limits: AdapterLimits
) -> dict[int, np.ndarray] | None:
    """Decode the frames stamped ``wanted`` following ``seek_plan``; None if the decoder did not produce one.

    A frame that nothing references and nobody wants is not decoded at all (``skip_frame = NONREF`` for its
    packet): that changes no other frame, and in H.264 with B-frames it is a third or more of the frames.
    """
    plan = seek_plan([table.pts[k] for k in table.keyframes], wanted)
    if plan is None:
        return None
    ctx = stream.codec_context
    found: dict[int, np.ndarray] = {}
    for keyframe, targets in plan:
        container.seek(keyframe, stream=stream, backward=True, any_frame=False)
        pending = set(targets)
        for packet in container.demux(stream):
            ctx.skip_frame = "DEFAULT" if packet.pts in pending or packet.size == 0 else "NONREF"
            for frame in ctx.decode(None if packet.size == 0 else packet):  # an empty packet: flush at the end
                if frame.pts is None or not _within(frame.width, frame.height, limits):
                    return None
                if frame.pts >= keyframe and frame.pts in pending:  # earlier: an open GOP's leading pictures
                    found[int(frame.pts)] = frame.to_ndarray(format="rgb24")
                    pending.discard(int(frame.pts))
            if not pending:
                break
        ctx.skip_frame = "DEFAULT"
        if pending:
            return None
    return found


def _within(width: int, height: int, limits: AdapterLimits) -> bool:
    return 0 < width <= limits.max_video_width and 0 < height <= limits.max_video_height


def probe_resolution(data: bytes) -> tuple[int, int]:
    """(width, height) from the container header via PyAV, before any frame is decoded (decord has no probe)."""
    try:
        with _video_stream(data) as (_, stream):
            return int(stream.codec_context.width), int(stream.codec_context.height)
    except Exception:
        return 0, 0  # unknown here: checked again on the decoded frames


def read_frames_pyav(
    data: bytes, indices: np.ndarray, cause: Exception, check_resolution: Callable[[int, int], None]
) -> np.ndarray:
    """Decode the frames at ``indices`` (in decode order) with PyAV, keeping only those in memory."""
    try:
        import av  # noqa: F401 - a missing library is the reason the client reads, not a decoding error
    except ImportError:  # pragma: no cover - av is a runtime dependency
        raise UndecodableInputError(f"video frames cannot be decoded: {library_reason(cause)}") from cause
    wanted = {int(i) for i in indices}
    last = max(wanted)
    found: dict[int, np.ndarray] = {}
    try:
        with _video_stream(data) as (container, stream):
            stream.thread_type = "NONE"
            check_resolution(int(stream.codec_context.width), int(stream.codec_context.height))
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    found[i] = frame.to_ndarray(format="rgb24")
                if i >= last:
                    break
    except InputTooLargeError:
        raise
    except Exception as exc:
        raise UndecodableInputError(f"video frames cannot be decoded: {library_reason(exc)}") from exc
    if not found:
        raise UndecodableInputError(f"video frames cannot be decoded: {library_reason(cause)}") from cause
    # A container that over-reports its length: repeat the last decoded frame, as for short clips.
    fallback = found[max(found)]
    return np.stack([found.get(int(i), fallback) for i in indices])


_LOG_PREFIX = re.compile(r"\[\d{2}:\d{2}:\d{2}\]\s*\S+:\d+:\s*")
"""decord's log prefix: the wall-clock time and its source file and line (``[09:40:16] /src/video_reader.cc:83: ``)."""
_ADDRESS = re.compile(r"\s*@\s*0x[0-9a-fA-F]+")


def library_reason(exc: BaseException) -> str:
    """The library's reason for a client message: first non-empty line, without decord's timestamp and source path
    or FFmpeg's object addresses, which say nothing to the client and would make equal failures differ."""
    for line in str(exc).strip().splitlines():
        clean = _ADDRESS.sub("", _LOG_PREFIX.sub("", line)).strip()
        if clean:
            return clean[:200]
    return type(exc).__name__
