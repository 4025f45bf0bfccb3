"""How many pixels one decoded image may have, and the image-file headers that tell it before decoding.

A small compressed file can decode to gigabytes (a 1.5 MB PNG of 20000 x 20000 RGBA pixels is 1.6 GB), so an image
over the limit is refused before it is decoded. The limit is OpenCV's own setting OPENCV_IO_MAX_IMAGE_PIXELS: set it
in the environment to change it; where it is not set, importing this module (the sdk does so first, before OpenCV is
imported) sets it to DEFAULT_MAX_IMAGE_PIXELS, so OpenCV refuses larger images of every format it reads. PNG, JPEG,
GIF, BMP, WebP and TIFF headers are also read here, so those are refused with their size even when OpenCV was imported
before the sdk (it reads the setting once, at import) or its decoder for a format ignores the setting.
"""
from __future__ import annotations

import os
import struct

from .errors import SadhError

MAX_PIXELS_ENV = "OPENCV_IO_MAX_IMAGE_PIXELS"
DEFAULT_MAX_IMAGE_PIXELS = 1 << 26  # 67 million pixels (8192 x 8192): any camera photo; 268 MB decoded as RGBA
HEADER_BYTES = 1 << 16  # JPEG markers before the frame header (EXIF, thumbnails) can fill most of 64 kB

os.environ.setdefault(MAX_PIXELS_ENV, str(DEFAULT_MAX_IMAGE_PIXELS))  # before OpenCV reads it


def max_image_pixels() -> int:
    """The pixel limit per decoded image: OPENCV_IO_MAX_IMAGE_PIXELS (SadhError unless a positive integer)."""
    text = os.environ.get(MAX_PIXELS_ENV, str(DEFAULT_MAX_IMAGE_PIXELS))
    if not text.strip().isdigit() or int(text) < 1:
        raise SadhError(f"{MAX_PIXELS_ENV} must be a positive number of pixels, got {text!r}")
    return int(text)


def header_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) from the bytes of a PNG, JPEG, GIF, BMP, WebP or TIFF file (the whole file: a TIFF's image
    directory often comes last); None for other formats or when the bytes do not say."""
    head = bytes(data[:HEADER_BYTES])
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_size(data)
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    if head.startswith(b"BM") and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return abs(width), abs(height)  # a negative height: rows stored top-down
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return _webp_size(head)
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(head)
    return None


def _tiff_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) from the first image directory of a TIFF file (ImageWidth and ImageLength, tags 256 and 257)."""
    order = "<" if bytes(data[:2]) == b"II" else ">"
    if len(data) < 8:
        return None
    (at,) = struct.unpack(order + "I", bytes(data[4:8]))
    if at + 2 > len(data):
        return None
    (entries,) = struct.unpack(order + "H", bytes(data[at : at + 2]))
    size = {}
    for entry in range(at + 2, min(at + 2 + 12 * entries, len(data) - 11), 12):
        tag, kind, count = struct.unpack(order + "HHI", bytes(data[entry : entry + 8]))
        if tag in (256, 257) and kind in (3, 4) and count == 1:  # a SHORT or LONG value, held in the entry itself
            field = order + ("H" if kind == 3 else "I")
            size[tag] = struct.unpack(field, bytes(data[entry + 8 : entry + 8 + struct.calcsize(field)]))[0]
    return (size[256], size[257]) if len(size) == 2 else None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) of a WebP file from its first chunk (VP8X, VP8L or VP8)."""
    kind, data = head[12:16], head[20:]
    if kind == b"VP8X" and len(data) >= 10:
        return 1 + int.from_bytes(data[4:7], "little"), 1 + int.from_bytes(data[7:10], "little")
    if kind == b"VP8L" and len(data) >= 5:
        bits = int.from_bytes(data[1:5], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if kind == b"VP8 " and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header (SOFn marker), walking the marker segments before it."""
    at = 2
    while at + 9 <= len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            at += 2
            continue
        length = int.from_bytes(head[at + 2 : at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", head[at + 5 : at + 9])
            return width, height
        at += 2 + length
    return None
