"""The protocol every modality adapter implements, the limits they enforce, and the helpers they share.

An adapter turns the bytes of one request into the float32 C x H x W map UniRepLKNet sees. It is CPU-only and
imports nothing web-related, because the service runs adapters in separate processes (spawned, time and
memory limited) and must be able to pickle them there: adapters hold only plain dataclasses, and every heavy
decoder library (torchaudio, decord, open3d, soundfile) is imported inside the function that needs it.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np
import torch

from models.registry import IMAGENET_MEAN, IMAGENET_STD
from unirep_errors import InputError, InputTooLargeError, InvalidParameterError, UndecodableInputError

from .serving import ServingDefaults

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AdapterLimits",
    "BaseAdapter",
    "ModalityAdapter",
    "as_chw",
    "check_finite",
    "check_size",
    "encode_png",
    "gray_to_uint8",
]


@dataclass(frozen=True)
class AdapterLimits:
    """What one request may cost to decode; the service's settings fill these, the defaults are for a GPU host.

    Every limit is checked as early as the format allows (header before body), so that a small upload that
    claims to be huge is refused before any memory is spent on it.
    """

    max_bytes: int = 64 * 2**20
    """Largest payload accepted by any adapter."""
    max_pixels: int = 50_000_000
    """Largest decoded image (width x height): the decompression-bomb guard, checked on the header."""
    max_audio_seconds: float = 600.0
    max_video_seconds: float = 600.0
    max_video_width: int = 4096
    max_video_height: int = 4096
    max_points: int = 5_000_000
    """Points in a cloud (or vertices of a mesh) as read from the file."""
    max_series_length: int = 100_000
    """Time steps of a series, and rows of a CSV."""
    max_series_variables: int = 10_000

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"AdapterLimits.{field.name} must be a positive number, got {value!r}")


@runtime_checkable
class ModalityAdapter(Protocol):
    """What the service needs from an adapter: decode bytes to a map, render a map for humans."""

    name: str
    limits: AdapterLimits

    def default_params(self) -> dict[str, Any]:
        """The official preprocessing constants; a model config overrides any of them."""
        ...

    def output_shape(self, **params: Any) -> tuple[int, int, int]:
        """C, H, W of what ``decode`` returns for these params, known without data (for warm-up buckets)."""
        ...

    def decode(self, data: bytes, **params: Any) -> torch.Tensor:
        """Validate and decode one payload into a contiguous float32 C x H x W tensor; raise ``InputError``s."""
        ...

    def preview(self, tensor: torch.Tensor, **params: Any) -> bytes:
        """A PNG of the map, for a human to see what the model sees."""
        ...

    def prepare(self) -> None:
        """Import the decoder libraries ahead of the first request (before a worker caps its memory)."""
        ...


P = TypeVar("P")


class BaseAdapter(ABC, Generic[P]):
    """Shared plumbing: parameter resolution against a frozen params dataclass, and the byte-size check.

    Subclasses set ``name``, ``params_type`` (a frozen dataclass whose defaults are the official constants and
    whose ``__post_init__`` validates values) and implement ``_decode`` and ``preview``. The class attributes
    below are the rest of what the service knows about a modality, so that one file describes it whole.
    """

    name: ClassVar[str] = ""
    params_type: ClassVar[type[Any]]
    heavy_imports: ClassVar[tuple[str, ...]] = ()
    """Decoder libraries a decoder process imports before capping its memory."""
    serving: ClassVar[ServingDefaults] = ServingDefaults()
    """Defaults of the modality's settings section (label set, channels, weights policy, batching)."""
    training_mixup: ClassVar[float] = 0.0
    """Mixup strength of the modality's training recipe when ``unirep train --mixup`` is not given (0: none)."""
    training_choices: ClassVar[tuple[str, ...]] = ()
    """The map params ``unirep train`` picks for this modality where the run leaves them open (``training_params``,
    ``fit_training_params``, or the series map search): what a report names beside a trained model's accuracy."""
    json_example: ClassVar[dict[str, Any] | None] = None
    """An example JSON body when the modality accepts ``application/json`` (None: it does not)."""
    small_params: ClassVar[dict[str, Any]] = {}
    """A smaller map for training on a CPU (``unirep train --recipe cpu``): params over the served defaults."""

    @classmethod
    def header_pixels(cls, data: bytes) -> int | None:
        """Pixels the upload will decode to, read from its header without decoding (None: unknown). The gateway
        sends uploads above a threshold to the heavy lane."""
        return None

    @classmethod
    def request_hints(cls, filename: str | None, content_type: str) -> dict[str, Any]:
        """Decoder params implied by the upload itself (file name, content type), merged per request."""
        return {}

    @classmethod
    def training_params(cls) -> dict[str, Any]:
        """Params ``unirep train`` uses where they differ from the served defaults: a map that trains better from
        scratch. The served defaults stay the contract of released weights and of model files that predate a
        param (a file records the params it was trained with); the run's own params override these."""
        return {}

    def fit_file_params(self, files: Iterable[bytes], params: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
        """``params`` with the choices ``unirep train`` makes from a sample of the training files before decoding them
        (what decoding itself depends on), leaving alone what the run set (``given``). ``files`` reads each file as it
        is taken, so an adapter that chooses nothing reads none. By default nothing is chosen."""
        return params

    def fit_training_params(
        self, cached: Sequence[torch.Tensor], params: dict[str, Any], given: dict[str, Any]
    ) -> dict[str, Any]:
        """``params`` with the choices ``unirep train`` makes from the decoded training examples (``cached``, in
        the training cache form), leaving alone what the run set (``given``). By default nothing is chosen."""
        return params

    @classmethod
    def model_params(cls, model_config: Any) -> dict[str, Any]:
        """Params the model variant dictates (its ``models.ModelConfig``); the settings' params override them."""
        return {}

    def __init__(self, limits: AdapterLimits | None = None) -> None:
        self.limits = limits if limits is not None else AdapterLimits()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(limits={self.limits!r})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.limits == getattr(other, "limits", None)

    def __hash__(self) -> int:
        return hash((type(self), self.limits))

    def default_params(self) -> dict[str, Any]:
        return dataclasses.asdict(self.params_type())

    def prepare(self) -> None:
        """Import this adapter's decoder libraries now (they load lazily on first decode otherwise).

        A worker process calls this before capping its address space, so the first request does not pay the
        import time, nor fail the memory limit with a library's mappings.
        """
        for module in self.heavy_imports:
            importlib.import_module(module)

    def resolve_params(self, **params: Any) -> P:
        """Build the params dataclass; unknown names and invalid values are ``InvalidParameterError`` (422)."""
        known = {f.name for f in dataclasses.fields(self.params_type)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise InvalidParameterError(
                f"unknown {self.name} parameter(s) {unknown}; known: {sorted(known)}", unknown=unknown
            )
        try:
            resolved: P = self.params_type(**params)
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(f"invalid {self.name} parameters: {exc}") from exc
        return resolved

    def decode(self, data: bytes, **params: Any) -> torch.Tensor:
        p = self.resolve_params(**params)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InputError(f"{self.name} payload must be bytes, got {type(data).__name__}")
        data = bytes(data)
        check_size(data, self.limits.max_bytes, self.name)
        out = self._decode(data, p)
        return out.to(torch.float32).contiguous()

    @abstractmethod
    def _decode(self, data: bytes, p: P) -> torch.Tensor:
        """The modality's own decoding of validated, size-checked bytes with resolved params."""

    # --- Training hooks: ``unirep train`` caches ``decode_for_training`` once per example, then builds each epoch's
    # inputs with ``augment`` (training) or ``training_input`` (validation). The service never calls them.

    def decode_for_training(self, data: bytes, **params: Any) -> torch.Tensor:
        """What training caches for one example; by default exactly what the service decodes."""
        return self.decode(data, **params)

    def training_input(self, cached: torch.Tensor, **params: Any) -> torch.Tensor:
        """The model input of a cached example without augmentation: equal to ``decode`` of the same bytes."""
        return cached

    def augment(self, cached: torch.Tensor, generator: torch.Generator, **params: Any) -> torch.Tensor:
        """A randomly perturbed model input for training; modalities override this (the default perturbs nothing)."""
        return self.training_input(cached, **params)


def check_size(data: bytes, max_bytes: int, what: str) -> None:
    """Refuse empty payloads (422) and oversized ones (413) before any decoder sees them."""
    if len(data) == 0:
        raise UndecodableInputError(f"the {what} payload is empty")
    if len(data) > max_bytes:
        raise InputTooLargeError(
            f"the {what} payload is {len(data)} bytes; the limit is {max_bytes}", size=len(data), limit=max_bytes
        )


def check_finite(array: np.ndarray, what: str) -> None:
    """NaN or inf would silently poison every output; name how many there are so the user can find them."""
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise UndecodableInputError(f"the {what} contains {bad} NaN or infinite value(s)", non_finite=bad)


def gray_to_uint8(plane: np.ndarray) -> np.ndarray:
    """Min-max scale one 2-D plane to 0..255 (a constant plane becomes mid-grey) for previews."""
    plane = np.asarray(plane, dtype=np.float64)
    finite = np.isfinite(plane)
    if not finite.any():
        return np.zeros(plane.shape, dtype=np.uint8)
    lo, hi = float(plane[finite].min()), float(plane[finite].max())
    if math.isclose(lo, hi):
        return np.full(plane.shape, 128, dtype=np.uint8)
    scaled = (np.where(finite, plane, lo) - lo) / (hi - lo) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def encode_png(array: np.ndarray, min_side: int = 0) -> bytes:
    """Encode an H x W (grey) or H x W x 3 (RGB) uint8 array as PNG, upscaled (nearest) to ``min_side``."""
    from PIL import Image

    if array.ndim == 2:
        image = Image.fromarray(np.ascontiguousarray(array), mode="L")
    else:
        image = Image.fromarray(np.ascontiguousarray(array), mode="RGB")
    short = min(image.size)
    if min_side and short < min_side:
        factor = math.ceil(min_side / max(short, 1))
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def as_chw(tensor: torch.Tensor, what: str) -> np.ndarray:
    """The preview helpers accept C x H x W (or a batch of one); anything else is a caller bug."""
    t = tensor.detach().to("cpu", torch.float32)
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3:
        raise ValueError(f"{what} preview needs a C x H x W tensor, got shape {tuple(tensor.shape)}")
    return t.numpy()
