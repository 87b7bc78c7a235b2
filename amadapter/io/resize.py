"""Resizing (photo, label map) pairs and photos to a common size: photos bilinear, label
maps nearest (IDs are never blended)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from amadapter.models.class_cost import resize_labels_nearest


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


def fit_photo(photo: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The largest centred crop of ``photo`` with the aspect of ``size``, resized to it
    (a 16:9 BDD frame against 2:1 outputs loses a band top and bottom, not its shape)."""
    height, width = photo.shape[:2]
    crop_h = min(height, round(width * size[0] / size[1]))
    crop_w = min(width, round(height * size[1] / size[0]))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return resize_photo(photo[top : top + crop_h, left : left + crop_w], size)
