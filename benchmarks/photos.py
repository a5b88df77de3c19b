"""Real photographs available offline, for the image benchmarks: scikit-learn's two sample images and, when the
``benchmark`` extra (scikit-image) is installed, scikit-image's bundled photographs. Nothing is downloaded.

All of them are smaller than 1080p (the largest is 1411 x 1411), so the 1080p case is built from them: either a
mosaic of photos at their native scale (``photo_mosaic``) or one photo enlarged (``enlarged``), both said so.
"""

from __future__ import annotations

import io
from importlib import resources

import numpy as np
from PIL import Image

SKIMAGE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "camera.png",
    "moon.png",
    "coins.png",
    "cell.png",
    "clock_motion.png",
    "grass.png",
    "gravel.png",
    "brick.png",
)
"""Photographs (colour and grey) among scikit-image's data files; synthetic test patterns are left out."""


def load_photos() -> dict[str, Image.Image]:
    """Name -> RGB photo (grey ones converted), scikit-learn's always, scikit-image's when installed."""
    photos: dict[str, Image.Image] = {}
    base = resources.files("sklearn.datasets") / "images"
    for name in ("china.jpg", "flower.jpg"):
        photos[name] = Image.open(io.BytesIO((base / name).read_bytes())).convert("RGB")
    try:
        data = resources.files("skimage") / "data"
    except ModuleNotFoundError:
        return photos
    for name in SKIMAGE_PHOTOS:
        path = data / name
        if path.is_file():
            photos[name] = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
    return photos


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def photo_mosaic(photos: dict[str, Image.Image], size: tuple[int, int] = (1920, 1080)) -> Image.Image:
    """A 4 x 3 grid of 480 x 360 centre crops of the photos at their native scale (no resampling), as one image."""
    tile_w, tile_h = size[0] // 4, size[1] // 3
    usable = [p for p in photos.values() if p.width >= tile_w and p.height >= tile_h]
    canvas = Image.new("RGB", size)
    for k in range(12):
        photo = usable[k % len(usable)]
        if k >= len(usable):
            photo = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        left, top = (photo.width - tile_w) // 2, (photo.height - tile_h) // 2
        canvas.paste(photo.crop((left, top, left + tile_w, top + tile_h)), ((k % 4) * tile_w, (k // 4) * tile_h))
    return canvas


def enlarged(photo: Image.Image, short_side: int = 1080) -> Image.Image:
    """The photo scaled (bicubic) so its short side is ``short_side``: real content, but smoother than a camera's."""
    scale = short_side / min(photo.size)
    return photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.BICUBIC)


def grey_levels(normalized_abs_diff: np.ndarray, std: tuple[float, ...]) -> np.ndarray:
    """A |difference| of normalized C x H x W maps in 0..255 grey levels (undoing the per-channel std)."""
    return normalized_abs_diff * np.asarray(std, dtype=np.float32)[:, None, None] * 255.0
