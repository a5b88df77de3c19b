"""What the decoder pool checks before it spends a decoder on an input: the crash quarantine, per-client budgets
of crashes and of decode time, and the cost class of the input (so that expensive ones run in their own lane).

Why per client (API key, else the address, see ``service.http.client_identity``) and not per request: an
attacker's every request is a new request. Why a crash budget per client *and kind of input* (the modality and the
container format read from the first bytes, e.g. ``video/avi``): one client is often many people (an office behind
one address, a proxy without forwarded headers), so a client over its crash budget is refused only the kind of
input that crashed, never its other inputs, and never another client. The exact file that crashed is quarantined
for everyone.

The decode-time budget is a backstop only: decoders are shared out fairly (``fair_queue``), so it refuses a client
only while other clients are waiting for a decoder, never a client alone. Budgets are kept for the most recently
seen clients only (bounded memory). The cost of an image is read from its header (PNG, GIF, BMP and JPEG
dimensions are at fixed or easily scanned places; nothing is decoded here); other inputs are costed by size.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from modality_adapters import adapter_class, list_adapters
from service.runtime.fair_queue import Weights, equal
from unirep_errors import DecoderCrashedError, RateLimitedError

MAX_CLIENTS = 10_000
MAX_QUARANTINE = 4096


@dataclass(frozen=True)
class GuardPolicy:
    crash_budget: int = 3
    """Decoder crashes a client may cause per ``crash_window_s`` before its decodes are refused (429)."""
    crash_window_s: float = 60.0
    decode_rate: float = 1.0
    """Decoder-seconds per second a client may use on average (1.0: one decoder, continuously)."""
    decode_burst_s: float = 10.0
    heavy_pixels: int = 16_000_000
    heavy_bytes: int = 16 * 2**20


_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "jpeg"),
    (0, b"\x89PNG", "png"),
    (0, b"GIF8", "gif"),
    (0, b"BM", "bmp"),
    (8, b"WEBP", "webp"),
    (8, b"AVI ", "avi"),
    (8, b"WAVE", "wav"),
    (4, b"ftyp", "mp4"),
    (0, b"\x1aE\xdf\xa3", "matroska"),
    (0, b"OggS", "ogg"),
    (0, b"fLaC", "flac"),
    (0, b"ID3", "mp3"),
    (0, b"ply", "ply"),
    (0, b"OFF", "off"),
    (0, b"\x93NUMPY", "npy"),
    (0, b"PK\x03\x04", "zip"),
    (0, b"[", "json"),
    (0, b"{", "json"),
)


def input_kind(modality: str, data: bytes) -> str:
    """``modality/format``: the scope of a crash budget, from the container's signature (``other`` when unknown)."""
    head = data[:16].lstrip() if data[:1] in (b" ", b"\n", b"\r", b"\t") else data[:16]
    for offset, magic, name in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return f"{modality}/{name}"
    return f"{modality}/other"


HEAD_BYTES = 1024
"""How much of a body the early check reads before deciding (a multipart part's headers, then the signature)."""


def upload_kind(modality: str, head: bytes, content_type: str) -> str | None:
    """``input_kind`` of an upload from the first bytes of its body, before the rest arrives: the raw body's own
    signature, or in a multipart body the signature of the first part when it is the ``file`` field. None when
    the head cannot tell (another field first, headers longer than the head): the check after decoding decides."""
    if content_type.split(";")[0].strip().lower() != "multipart/form-data":
        return input_kind(modality, head)
    headers, found, content = head.partition(b"\r\n\r\n")
    if not found or b'name="file"' not in headers or len(content) < 16:
        return None
    return input_kind(modality, content)


class _Bucket:
    def __init__(self, capacity: float, now: float) -> None:
        self.tokens = capacity
        self.updated = now
        self.crashes: dict[str, list[float]] = {}
        """Crash times by kind of input (``input_kind``), within the window."""


class DecodeGuard:
    def __init__(self, policy: GuardPolicy, weight_of: Weights = equal) -> None:
        self.policy = policy
        self.weight_of = weight_of
        """A client's weight scales its decode rate and burst (its fair share of decoders scales with it)."""
        self._clients: OrderedDict[str, _Bucket] = OrderedDict()
        self._quarantine: OrderedDict[str, str] = OrderedDict()

    def _bucket(self, client: str) -> _Bucket:
        now = time.monotonic()
        bucket = self._clients.get(client)
        if bucket is None:
            bucket = self._clients[client] = _Bucket(self.policy.decode_burst_s * self.weight_of(client), now)
            while len(self._clients) > MAX_CLIENTS:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(client)
            elapsed = now - bucket.updated
            weight = self.weight_of(client)
            bucket.tokens = min(
                self.policy.decode_burst_s * weight, bucket.tokens + elapsed * self.policy.decode_rate * weight
            )
            bucket.updated = now
        window = self.policy.crash_window_s
        for kind in list(bucket.crashes):
            bucket.crashes[kind] = [t for t in bucket.crashes[kind] if now - t < window]
            if not bucket.crashes[kind]:
                del bucket.crashes[kind]
        return bucket

    def admit(self, client: str, digest: str, kind: str, contended: bool = False) -> None:
        """Raise when this input, or this client for this kind of input, may not use a decoder now (checked before
        any decoding); ``kind`` is ``input_kind``'s, ``contended`` whether other clients wait for decoders."""
        why = self._quarantine.get(digest)
        if why is not None:
            modality = kind.split("/", 1)[0]
            raise DecoderCrashedError(
                f"this exact {modality} file crashed the decoder before ({why}); it is refused without decoding",
                quarantined=True,
            )
        self.admit_kind(client, kind)
        self.admit_client(client, contended)

    def admit_kind(self, client: str, kind: str) -> None:
        """The crash budget of ``client`` for ``kind`` of input: cheap enough to run on a body's first bytes."""
        crashes = self._bucket(client).crashes.get(kind, [])
        if len(crashes) >= self.policy.crash_budget:
            retry = max(1, math.ceil(crashes[0] + self.policy.crash_window_s - time.monotonic()))
            raise RateLimitedError(
                f"this client's {kind} files crashed {len(crashes)} decoders recently; such files are refused for "
                f"{retry} s (other inputs are not)",
                retry_after=retry,
                input_kind=kind,
            )

    def admit_client(self, client: str, contended: bool) -> None:
        """The decode-time backstop: cheap enough to run before the body is read; binds only under contention."""
        bucket = self._bucket(client)
        if contended and bucket.tokens < 0:
            retry = max(1, math.ceil(-bucket.tokens / (self.policy.decode_rate * self.weight_of(client))))
            raise RateLimitedError(
                f"this client used more than its share of decoding time while others wait; retry after {retry} s",
                retry_after=retry,
            )

    def charge(self, client: str, seconds: float, crashed_kind: str | None = None) -> None:
        """Charge a decode's time to its client, and a crash to the kind of input that caused it."""
        bucket = self._bucket(client)
        bucket.tokens -= max(0.0, seconds)
        if crashed_kind is not None:
            bucket.crashes.setdefault(crashed_kind, []).append(time.monotonic())

    def quarantine(self, digest: str, why: str) -> None:
        self._quarantine[digest] = why
        while len(self._quarantine) > MAX_QUARANTINE:
            self._quarantine.popitem(last=False)

    def is_heavy(self, modality: str, data: bytes) -> bool:
        """Inputs whose decode is expected to be expensive: a large file, or many pixels by the header (for a
        modality whose adapter can read that without decoding)."""
        if len(data) > self.policy.heavy_bytes:
            return True
        pixels = adapter_class(modality).header_pixels(data) if modality in list_adapters() else None
        return pixels is not None and pixels > self.policy.heavy_pixels
