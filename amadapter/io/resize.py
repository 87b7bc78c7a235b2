"""Resizing (photo, label map) pairs and photos to a common size: photos bilinear, label
maps nearest (IDs are never blended)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F


def resize_labels_nearest(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, H, W)`` integer label maps -> ``(N, h, w)`` uint8, nearest at pixel centres.

    Uses PyTorch's "nearest-exact" (source index floor((i + 0.5) * H / h)), which
    keeps a map centred when the size ratio is not an integer."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels.to(torch.uint8)
    # float32 holds 0..255 exactly, so the round trip keeps every ID
    resized = F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest-exact")
    return resized[:, 0].to(torch.uint8)


def resize_photo(photo: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> ``size`` = (h, w), bilinear (PIL's, antialiased when shrinking)."""
    if photo.shape[:2] == tuple(size):
        return photo
    return np.asarray(Image.fromarray(photo).resize((size[1], size[0]), Image.BILINEAR))


def resize_pair(image: np.ndarray, label: np.ndarray, size: tuple[int, int] | None):
    """Photo bilinear, label nearest; unchanged when ``size`` is None."""
    if size is None or image.shape[:2] == tuple(size):
        return image, label
    ids = resize_labels_nearest(torch.from_numpy(label)[None], size)[0].numpy()
    return resize_photo(image, size), ids

