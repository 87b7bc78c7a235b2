"""Images for human eyes (previews, reports): PNG bytes and nearest-neighbour enlargement."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png_bytes(array: np.ndarray) -> bytes:
    """An (H, W) or (H, W, 3) uint8 array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def enlarge(tile: np.ndarray, min_height: int) -> np.ndarray:
    """``tile`` repeated (nearest, an integer factor) until it is at least ``min_height`` high,
    so small samples stay visible with their pixels sharp."""
    factor = -(-min_height // tile.shape[0])
    return tile.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else tile
