"""Image size from the file header alone: a decode's cost is known before a decoder process is spent on it.

Own code rather than PIL's lazy ``Image.open``: this runs in the gateway on untrusted bytes, and reading four
header layouts with ``struct`` (bounded loops, no allocation proportional to the input) imports nothing heavy.
"""

from __future__ import annotations

import struct

__all__ = ["image_pixels"]


def image_pixels(data: bytes) -> int | None:
    """Width x height from an image header, or None when the format is not one we can read without decoding."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width) * int(height)
    if data[:4] == b"GIF8" and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width) * int(height)
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(int(width)) * abs(int(height))
    if data[:2] == b"\xff\xd8":
        return _jpeg_pixels(data)
    return None


def _jpeg_pixels(data: bytes) -> int | None:
    pos = 2
    for _ in range(256):  # markers before the frame header; a hostile file cannot make this loop long
        if pos + 9 > len(data) or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return int(width) * int(height)
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + int(length)
    return None
