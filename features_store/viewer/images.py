"""Frames and crops as image files: JPEG through Pillow when it is installed, else PNG written with the standard
library (a store consumer's install has neither Pillow nor PyAV, and still sees the face crops)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np

MAX_SIDE_PX = 1280
"""Source frames larger than this on their longest side are scaled down for the page (overlays scale with them)."""
JPEG_QUALITY = 85


def encode_rgb(rgb: np.ndarray, max_side_px: int = MAX_SIDE_PX) -> tuple[bytes, str]:
    """(H, W, 3) uint8 RGB -> (image bytes, MIME type), scaled down to ``max_side_px`` when larger."""
    try:
        from PIL import Image
    except ImportError:
        step = max(1, -(-max(rgb.shape[:2]) // max_side_px))
        return png_bytes(np.ascontiguousarray(rgb[::step, ::step])), "image/png"
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    if max(image.size) > max_side_px:
        scale = max_side_px / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue(), "image/jpeg"


def png_bytes(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB as a PNG file (8-bit truecolour, no filter)."""
    height, width = rgb.shape[:2]
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rgb.reshape(height, width * 3)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png"}
