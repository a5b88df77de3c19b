"""Image adapter: every accepted format decodes, and the result equals the official eval transform exactly."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from modality_adapters import IMAGENET_MEAN, IMAGENET_STD, AdapterLimits, get_adapter
from unirep_errors import InputTooLargeError


def official_transform(input_size: int, crop_pct: float = 0.875) -> transforms.Compose:
    """``build_transform(is_train=False)`` of the official repo (ConvNeXt lineage), verbatim in behaviour."""
    t: list[object] = []
    if input_size >= 384:
        t.append(transforms.Resize((input_size, input_size), interpolation=transforms.InterpolationMode.BICUBIC))
    else:
        size = int(input_size / crop_pct)
        t.append(transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC))
        t.append(transforms.CenterCrop(input_size))
    t += [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return transforms.Compose(t)


@pytest.mark.parametrize(
    ("fmt", "mode", "save"),
    [
        ("JPEG", "RGB", {"quality": 90}),
        ("PNG", "RGB", {}),
        ("PNG", "RGBA", {}),
        ("PNG", "I;16", {}),
        ("PNG", "L", {}),
        ("PNG", "P", {}),
        ("WEBP", "RGB", {"quality": 80}),
        ("WEBP", "RGBA", {"lossless": True}),
        ("GIF", "P", {}),
        ("BMP", "RGB", {}),
        ("TIFF", "RGB", {}),
        ("TIFF", "CMYK", {}),
        ("JPEG", "L", {}),
    ],
)
@pytest.mark.parametrize("size", [(96, 64), (50, 130)])
def test_formats_decode(media, fmt, mode, save, size) -> None:
    adapter = get_adapter("image")
    out = adapter.decode(media.image(fmt, size=size, mode=mode, **save))
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32 and out.is_contiguous()
    assert torch.isfinite(out).all()
    assert out.shape == adapter.output_shape()


@pytest.mark.parametrize("input_size", [224, 192, 256, 384, 512])
@pytest.mark.parametrize("size", [(300, 200), (200, 300), (257, 257), (120, 90), (1000, 301)])
def test_equals_official_eval_transform(media, input_size, size) -> None:
    data = media.image("PNG", size=size)
    expected = official_transform(input_size)(Image.open(io.BytesIO(data)).convert("RGB"))
    got = get_adapter("image").decode(data, input_size=input_size)
    assert got.shape == expected.shape == (3, input_size, input_size)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_equals_official_for_jpeg_and_crop_pct(media) -> None:
    data = media.image("JPEG", size=(640, 480), quality=85)
    expected = official_transform(224, crop_pct=0.95)(Image.open(io.BytesIO(data)).convert("RGB"))
    got = get_adapter("image").decode(data, crop_pct=0.95)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_exif_rotation_is_applied() -> None:
    # A 60 x 40 landscape image, left half red, stored with EXIF orientation 6 (rotate 90 degrees clockwise).
    arr = np.zeros((40, 60, 3), np.uint8)
    arr[:, :30] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    adapter = get_adapter("image")
    upright = adapter.open_rgb(buf.getvalue())
    assert upright.size == (40, 60)  # portrait after transpose
    px = np.asarray(upright)
    assert px[5, 20, 0] > 200 and px[-5, 20, 0] < 60  # red moved to the top half


def test_alpha_is_composited_on_white() -> None:
    arr = np.zeros((32, 32, 4), np.uint8)
    arr[:, :16] = (10, 200, 30, 255)  # opaque green-ish left half
    arr[:, 16:] = (0, 0, 0, 0)  # fully transparent (black underneath) right half
    buf = io.BytesIO()
    Image.fromarray(arr, mode="RGBA").save(buf, format="PNG")
    rgb = np.asarray(get_adapter("image").open_rgb(buf.getvalue()))
    assert tuple(rgb[5, 5]) == (10, 200, 30)
    assert tuple(rgb[5, 30]) == (255, 255, 255)


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    arr = np.full((16, 16), 32768, np.uint16)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    rgb = np.asarray(get_adapter("image").open_rgb(buf.getvalue()))
    assert abs(int(rgb[0, 0, 0]) - 128) <= 1


def test_pixel_limit_is_checked_on_the_header(media) -> None:
    adapter = get_adapter("image", AdapterLimits(max_pixels=1000))
    with pytest.raises(InputTooLargeError, match="pixels"):
        adapter.decode(media.image("PNG", size=(50, 50)))


def test_preview_round_trips(media) -> None:
    adapter = get_adapter("image")
    data = media.image("PNG", size=(224, 224))
    png = adapter.preview(adapter.decode(data, crop_pct=1.0))
    back = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    original = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    assert back.shape == (224, 224, 3)
    assert np.abs(back - original).max() <= 1
