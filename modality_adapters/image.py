"""Image adapter: the official UniRepLKNet / ConvNeXt ImageNet evaluation transform, from bytes.

The official ``build_transform`` is torchvision ``Resize(int(size / crop_pct), BICUBIC)`` + ``CenterCrop(size)``
for sizes below 384 and ``Resize((size, size), BICUBIC)`` (a warp) from 384 up, then ``ToTensor`` and ImageNet
``Normalize``. We do the same arithmetic directly on PIL and numpy (no torchvision import in the worker), with
torchvision's size and crop-offset rounding, so that the result is bit-for-bit the official one.

``decode_mode="fast"`` (opt-in) lets libjpeg scale a JPEG by 1/2, 1/4 or 1/8 in the DCT domain while decoding, never
below the size the exact transform resizes to, and then applies the same resize and crop to the smaller image.
It decodes and resizes several times fewer pixels; the map is close to, not equal to, the exact one.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from unirep_errors import InputTooLargeError, UndecodableInputError, UnsupportedMediaTypeError

from .base import IMAGENET_MEAN, IMAGENET_STD, BaseAdapter, as_chw, encode_png
from .image_header import image_pixels
from .serving import AUTO_WEIGHTS, ServingDefaults
from .training_augment import augment_image

__all__ = ["SUPPORTED_IMAGE_FORMATS", "ImageAdapter", "ImageParams"]

SUPPORTED_IMAGE_FORMATS: frozenset[str] = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF"})
"""PIL format names we accept; MPO is what phone cameras write as .jpg (a JPEG with extra frames)."""

WARP_FROM_SIZE = 384
"""From this input size on the official transform warps to size x size instead of resize + centre crop."""
DECODE_MODES = ("exact", "fast")
"""``exact``: the official transform bit for bit; ``fast``: JPEG DCT-domain downscaling first (see above)."""
_DRAFT_FORMATS = frozenset({"JPEG", "MPO"})


@dataclass(frozen=True)
class ImageParams:
    input_size: int = 224
    crop_pct: float = 0.875
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    decode_mode: str = "exact"

    def __post_init__(self) -> None:
        if self.decode_mode not in DECODE_MODES:
            raise ValueError(f"decode_mode must be one of {DECODE_MODES}, got {self.decode_mode!r}")
        if not isinstance(self.input_size, int) or not 8 <= self.input_size <= 4096:
            raise ValueError(f"input_size must be an int in [8, 4096], got {self.input_size!r}")
        if not 0.0 < float(self.crop_pct) <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct!r}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need 3 values each, std positive")


class ImageAdapter(BaseAdapter[ImageParams]):
    """JPEG, PNG (incl. 16-bit and alpha), WebP, BMP, GIF (first frame), TIFF -> normalized 3 x size x size."""

    name: ClassVar[str] = "image"
    params_type: ClassVar[type[Any]] = ImageParams
    heavy_imports: ClassVar[tuple[str, ...]] = ("PIL.Image",)
    serving: ClassVar[ServingDefaults] = ServingDefaults(label_set="imagenet-1k", weights=AUTO_WEIGHTS)
    small_params: ClassVar[dict[str, Any]] = {"input_size": 112}

    @classmethod
    def header_pixels(cls, data: bytes) -> int | None:
        return image_pixels(data)

    @classmethod
    def model_params(cls, model_config: Any) -> dict[str, Any]:
        """Each variant is evaluated at its own input size, crop and normalization."""
        mc = model_config
        return {"input_size": mc.input_size[-1], "crop_pct": mc.crop_pct, "mean": mc.mean, "std": mc.std}

    def output_shape(self, **params: Any) -> tuple[int, int, int]:
        p = self.resolve_params(**params)
        return (3, p.input_size, p.input_size)

    def _decode(self, data: bytes, p: ImageParams) -> torch.Tensor:
        image = self.open_checked(data)
        header_size = image.size
        drafted_size = draft_for_target(image, p.input_size, p.crop_pct) if p.decode_mode == "fast" else None
        image = self.load_rgb(image)
        source_size: tuple[int, int] | None = None
        if drafted_size is not None:
            # The resize target comes from the full-size (upright) image, so the crop is placed as the exact one.
            source_size = header_size if image.size == drafted_size else (header_size[1], header_size[0])
        image = transform_geometry(image, p.input_size, p.crop_pct, source_size)
        return torch.from_numpy(normalize(np.asarray(image, dtype=np.uint8), p.mean, p.std))

    def open_rgb(self, data: bytes) -> Image.Image:
        """Decode to an upright 8-bit RGB image, refusing bombs on the header before any pixel is decoded."""
        return self.load_rgb(self.open_checked(data))

    def open_checked(self, data: bytes) -> Image.Image:
        """Open (header only) and refuse foreign formats and images past the pixel limit; no pixel is decoded."""
        with warnings.catch_warnings():
            # We enforce our own pixel limit below; PIL's warning (and its 2x error) must not leak to stderr.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                image = Image.open(io.BytesIO(data))
            except Image.DecompressionBombError as exc:
                raise InputTooLargeError("image dimensions exceed the decoder's safety limit") from exc
            except UnidentifiedImageError as exc:
                if looks_like_image(data):
                    raise UndecodableInputError("image is truncated or corrupt (its header is unreadable)") from exc
                raise UnsupportedMediaTypeError(
                    "not a recognised image; send JPEG, PNG, WebP, BMP, GIF or TIFF",
                    supported=sorted(SUPPORTED_IMAGE_FORMATS),
                ) from exc
            except Exception as exc:  # PIL raises many types on corrupt headers (SyntaxError, struct.error, ...)
                raise UndecodableInputError("corrupt image header") from exc
            fmt = image.format or "unknown"
            if fmt not in SUPPORTED_IMAGE_FORMATS:
                raise UnsupportedMediaTypeError(
                    f"image format {fmt} is not supported; send JPEG, PNG, WebP, BMP, GIF or TIFF",
                    format=fmt,
                    supported=sorted(SUPPORTED_IMAGE_FORMATS),
                )
            width, height = image.size
            if width <= 0 or height <= 0:
                raise UndecodableInputError(f"image header declares an empty image ({width} x {height})")
            if width * height > self.limits.max_pixels:
                raise InputTooLargeError(
                    f"image is {width} x {height} = {width * height} pixels; the limit is {self.limits.max_pixels}",
                    width=width,
                    height=height,
                    limit=self.limits.max_pixels,
                )
        return image

    def load_rgb(self, image: Image.Image) -> Image.Image:
        """Decode the pixels of a checked image, turn it upright (EXIF) and make it 8-bit RGB."""
        fmt = image.format or "unknown"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                image.load()
            except Image.DecompressionBombError as exc:
                raise InputTooLargeError("image exceeds the decoder's safety limit") from exc
            except Exception as exc:
                raise UndecodableInputError(f"{fmt} image cannot be decoded (truncated or corrupt)") from exc
        upright: Image.Image = image
        # A broken EXIF block should not cost the user their image: keep it as stored.
        with contextlib.suppress(Exception):
            upright = ImageOps.exif_transpose(image) or image
        try:
            return to_rgb(upright)
        except Exception as exc:
            raise UndecodableInputError(f"{fmt} image in mode {upright.mode} cannot be converted to RGB") from exc

    def preview(self, tensor: torch.Tensor, **params: Any) -> bytes:
        """Undo the normalization and show the crop the model sees."""
        p = self.resolve_params(**params)
        chw = as_chw(tensor, "image")
        mean = np.asarray(p.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(p.std, dtype=np.float32)[:, None, None]
        rgb = np.clip(np.rint((chw * std + mean) * 255.0), 0, 255).astype(np.uint8)
        return encode_png(rgb.transpose(1, 2, 0))

    def augment(self, cached: torch.Tensor, generator: torch.Generator, **params: Any) -> torch.Tensor:
        """Training only: random resized crop and horizontal flip of the decoded crop."""
        return augment_image(cached, generator)


_IMAGE_MAGICS: tuple[bytes, ...] = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


def looks_like_image(data: bytes) -> bool:
    """A supported format's magic: a file that has it but will not open is corrupt (422), not foreign (415)."""
    return data.startswith(_IMAGE_MAGICS) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB, with two deliberate choices the plain ``convert('RGB')`` gets wrong.

    - Transparency is composited on white: a transparent background is what a person sees as the page, while
      ``convert`` would expose whatever colour values hide under alpha 0 (often black). Opaque images are
      unaffected, so the official transform is matched exactly for them.
    - 16-bit greyscale (mode I;16 / I) is scaled by 1/257 to 8 bits; ``convert`` would clip everything above
      255 to white. Float images (mode F) are taken as 0..1 when their maximum is at most 1, else as 0..255.
    """
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise UndecodableInputError("image contains NaN or infinite pixel values")
        if mode != "F":
            arr = arr / 257.0
        elif arr.size and arr.max() <= 1.0:
            arr = arr * 255.0
        grey = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return image
    return image.convert("RGB")


def resized_size(width: int, height: int, short: int) -> tuple[int, int]:
    """torchvision's ``Resize(int)`` output size: short side to ``short``, long side truncated, not rounded."""
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def resize_target(width: int, height: int, input_size: int, crop_pct: float) -> tuple[int, int]:
    """The size the official transform resizes a ``width`` x ``height`` image to before cropping."""
    if input_size >= WARP_FROM_SIZE:
        return input_size, input_size
    return resized_size(width, height, int(input_size / crop_pct))


def draft_for_target(image: Image.Image, input_size: int, crop_pct: float) -> tuple[int, int] | None:
    """Ask libjpeg to decode a JPEG scaled by 1/2, 1/4 or 1/8, never smaller than the exact resize target.

    Called on an opened, not yet loaded image. Returns the reduced (stored-orientation) size, or None when nothing
    was reduced (not a JPEG, or not at least twice the target on both sides). The target of a transposed image is
    the transposed target, so EXIF orientation does not matter here (``_decode`` maps the sizes back).
    """
    if image.format not in _DRAFT_FORMATS:
        return None
    target_w, target_h = resize_target(image.width, image.height, input_size, crop_pct)
    if image.width < 2 * target_w or image.height < 2 * target_h:
        return None
    before = image.size
    try:
        image.draft(None, (target_w, target_h))
    except Exception:
        return None  # an odd JPEG (e.g. progressive with several tiles) simply decodes at full size
    return image.size if image.size != before else None


def transform_geometry(
    image: Image.Image, input_size: int, crop_pct: float, source_size: tuple[int, int] | None = None
) -> Image.Image:
    """The official resize-and-crop (below 384) or warp (384 and up), with torchvision's rounding.

    ``source_size``: the size of the full image when ``image`` is a reduced decode of it; the resize target and
    the crop are those the exact transform computes for the full image.
    """
    if input_size >= WARP_FROM_SIZE:
        return image.resize((input_size, input_size), Image.Resampling.BICUBIC)
    new_w, new_h = resize_target(*(source_size or image.size), input_size, crop_pct)
    if (new_w, new_h) != image.size:
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    top = round((new_h - input_size) / 2.0)
    left = round((new_w - input_size) / 2.0)
    return image.crop((left, top, left + input_size, top + input_size))


def normalize(hwc: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """ToTensor + Normalize in float32, in torchvision's order of operations (so results match exactly)."""
    x: np.ndarray = hwc.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))
