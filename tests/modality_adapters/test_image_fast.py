"""Opt-in ``decode_mode="fast"`` (JPEG DCT-domain downscaling): same shape, close map, no-op where it cannot help."""

from __future__ import annotations

import functools
import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from modality_adapters import get_adapter
from modality_adapters.image import draft_for_target, normalize, resize_target, transform_geometry
from unirep_errors import InvalidParameterError


@functools.lru_cache(maxsize=16)
def scene(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like picture: a sky gradient, textured blobs with soft edges, fine grain; not white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([90 + 80 * yy / height, 120 + 60 * yy / height, 200 - 40 * yy / height], -1)
    for _ in range(12):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.05, 0.3) * width, rng.uniform(0.05, 0.3) * height
        inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1
        stripes = 30 * np.sin(xx / rng.uniform(3, 15) + yy / rng.uniform(5, 20))
        img[inside] = rng.uniform(20, 235, 3) + stripes[inside, None]
    img += rng.normal(0, 4, img.shape)
    smooth = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2))
    return smooth


def jpeg(image: Image.Image, **save: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90, **save)
    return buf.getvalue()


@pytest.mark.parametrize("input_size", [64, 224, 384])
@pytest.mark.parametrize("size", [(1920, 1080), (900, 1600), (3000, 500)])
def test_fast_has_the_exact_shape(input_size: int, size: tuple[int, int]) -> None:
    adapter = get_adapter("image")
    out = adapter.decode(jpeg(scene(*size)), input_size=input_size, decode_mode="fast")
    assert out.shape == (3, input_size, input_size) == adapter.output_shape(input_size=input_size)
    assert out.dtype == torch.float32 and out.is_contiguous() and torch.isfinite(out).all()


@pytest.mark.parametrize(("mode", "save"), [("L", {}), ("CMYK", {}), ("RGB", {"progressive": True})])
def test_fast_handles_grey_cmyk_and_progressive_jpegs(mode: str, save: dict[str, object]) -> None:
    adapter = get_adapter("image")
    data = jpeg(scene(1600, 1200).convert(mode), **save)
    assert draft_for_target(Image.open(io.BytesIO(data)), 224, 0.875) == (400, 300)  # 1/4 of 1600 x 1200
    exact = adapter.decode(data)
    fast = adapter.decode(data, decode_mode="fast")
    assert 0 < float((fast - exact).abs().mean()) < 0.05


def test_fast_decodes_a_large_jpeg_at_reduced_size() -> None:
    data = jpeg(scene(1920, 1080))
    image = Image.open(io.BytesIO(data))
    target = resize_target(1920, 1080, 224, 0.875)
    assert target == (455, 256)
    assert draft_for_target(image, 224, 0.875) == (480, 270)  # 1/4: the largest scale still >= the target
    image.load()
    assert image.size == (480, 270)
    # The served map is that reduced decode, resized to the exact target from the full size and cropped.
    expected = normalize(np.asarray(transform_geometry(image.convert("RGB"), 224, 0.875, (1920, 1080))), *_norm())
    fast = get_adapter("image").decode(data, decode_mode="fast")
    exact = get_adapter("image").decode(data)
    assert torch.equal(fast, torch.from_numpy(expected))
    assert not torch.equal(fast, exact)


def test_fast_is_close_to_exact_on_a_photo_like_image() -> None:
    adapter = get_adapter("image")
    for seed, size in [(0, (1920, 1080)), (1, (1200, 1600)), (2, (2400, 1800))]:
        data = jpeg(scene(*size, seed=seed))
        exact = adapter.decode(data)
        fast = adapter.decode(data, decode_mode="fast")
        diff = (fast - exact).abs()
        # Normalized units (1 grey level is ~0.017): about 2 grey levels on average.
        assert float(diff.mean()) < 0.05, (size, float(diff.mean()))
        assert float(diff.mean()) > 0  # it really took the reduced path


@pytest.mark.parametrize(
    ("data_of", "why"),
    [
        (lambda: _png(scene(1920, 1080)), "PNG has no DCT-domain scaling"),
        (lambda: jpeg(scene(400, 300)), "a JPEG smaller than twice the target"),
        (lambda: jpeg(scene(400, 1600)), "twice the target on the long side only"),
    ],
)
def test_fast_is_a_no_op_where_draft_cannot_apply(data_of, why: str) -> None:
    adapter = get_adapter("image")
    data = data_of()
    assert torch.equal(adapter.decode(data, decode_mode="fast"), adapter.decode(data)), why


def test_fast_respects_exif_orientation() -> None:
    # Stored landscape 1600 x 1000 with orientation 6: upright it is portrait 1000 x 1600.
    exif = Image.Exif()
    exif[0x0112] = 6
    data = jpeg(scene(1600, 1000, seed=3), exif=exif.tobytes())
    image = Image.open(io.BytesIO(data))
    # The upright target is 256 x 409, i.e. 409 x 256 as stored: 1600 // 409 = 3 -> scale 1/2.
    assert draft_for_target(image, 224, 0.875) == (800, 500)
    adapter = get_adapter("image")
    exact = adapter.decode(data)
    fast = adapter.decode(data, decode_mode="fast")
    assert float((fast - exact).abs().mean()) < 0.05


def test_unknown_decode_mode_is_a_parameter_error() -> None:
    with pytest.raises(InvalidParameterError, match="decode_mode must be one of"):
        get_adapter("image").decode(jpeg(scene(64, 64)), decode_mode="turbo")


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _norm() -> tuple[tuple[float, ...], tuple[float, ...]]:
    params = get_adapter("image").default_params()
    return tuple(params["mean"]), tuple(params["std"])
