"""Build small dataset layouts with real PNG/JPEG files in a temporary folder."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def save_image(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(path)
    return path


def png_bytes(
    array: np.ndarray, mode: str | None = None, palette: list[int] | None = None
) -> bytes:
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    if palette is not None:
        image.putpalette(palette)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def cityscapes_frame(
    root: Path,
    frame: str,
    label_ids: np.ndarray | None = None,
    train_ids: np.ndarray | None = None,
    photo_size: tuple[int, int] | None = None,
    split: str = "val",
) -> None:
    """Write a frame's label files (and a grey photo, (width, height)) in the Cityscapes layout."""
    city = frame.split("_")[0]
    labels = root / "gtFine" / split / city
    if label_ids is not None:
        save_image(labels / f"{frame}_gtFine_labelIds.png", label_ids)
    if train_ids is not None:
        save_image(labels / f"{frame}_gtFine_labelTrainIds.png", train_ids)
    if photo_size is not None:
        width, height = photo_size
        photo = np.full((height, width, 3), 128, dtype=np.uint8)
        save_image(root / "leftImg8bit" / split / city / f"{frame}_leftImg8bit.png", photo)
