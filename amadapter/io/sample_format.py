"""The sample format inside a shard (README "Output format"), encoded and decoded.

A sample is three tar members sharing one ``__key__`` (``amadapter.io.keys``):

- ``{key}.image.jpg`` (or ``.image.png``): the RGB image;
- ``{key}.seg.png``: 8-bit grayscale train IDs (0..18, 255 = ignore), same size
  as the image;
- ``{key}.json``: provenance (source label path, exemplar, seed, model, ...),
  UTF-8 JSON with sorted keys.

Encoding is deterministic (fixed JPEG quality, fixed PNG compression level,
sorted JSON), so the same arrays always give the same bytes. Pure numpy + PIL.
"""

from __future__ import annotations

import io
import json
from typing import Any, Mapping

import numpy as np
from PIL import Image

from amadapter.io.keys import is_safe_key
from amadapter.io.labels import check_train_ids

IMAGE_FORMATS = ("jpg", "png")
SEG = "seg.png"
META = "json"
JPEG_QUALITY = 95
PNG_COMPRESS_LEVEL = 6


def image_member(image_format: str) -> str:
    """``"image.jpg"`` or ``"image.png"``."""
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    return f"image.{image_format}"


def encode_sample(
    key: str,
    image: np.ndarray,
    label: np.ndarray,
    meta: Mapping[str, Any],
    image_format: str = "jpg",
) -> dict[str, bytes | str]:
    """``{"__key__": key, "image.jpg"|"image.png": ..., "seg.png": ..., "json": ...}``.

    ``image``: (H, W, 3) uint8 RGB; ``label``: (H, W) uint8 train IDs, same H, W.
    Raises ``ValueError`` for an unsafe key, wrong shapes or dtypes, or
    ``UnknownLabelIdError`` for values that are not train IDs: these are bugs
    upstream, not bad user input.
    """
    if not is_safe_key(key):
        raise ValueError(f"unsafe sample key {key!r}: use amadapter.io.keys.safe_key")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{key}: image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if label.dtype != np.uint8 or label.shape != image.shape[:2]:
        raise ValueError(
            f"{key}: label must be uint8 of the image's size {image.shape[:2]}, "
            f"got {label.shape} {label.dtype}"
        )
    check_train_ids(label, key)
    member = image_member(image_format)
    return {
        "__key__": key,
        member: _encode_image(image, image_format),
        SEG: _encode_image(label, "png"),
        META: json.dumps(meta, sort_keys=True, separators=(",", ":"), default=_json_value).encode(),
    }


def decode_sample(sample: Mapping[str, Any]) -> tuple[str, np.ndarray, np.ndarray, dict]:
    """Inverse of ``encode_sample`` for a dict of raw member bytes (as WebDataset yields
    it): ``(key, image (H, W, 3) uint8, label (H, W) uint8 train IDs, meta)``."""
    member = next((image_member(f) for f in IMAGE_FORMATS if image_member(f) in sample), None)
    if member is None:
        raise ValueError(f"sample {sample.get('__key__')!r} has no image member")
    # np.array, not asarray: PIL's buffer is read-only, and torch's default collate warns on it
    image = np.array(Image.open(io.BytesIO(sample[member])).convert("RGB"))
    label = np.array(Image.open(io.BytesIO(sample[SEG])))
    return sample["__key__"], image, label, json.loads(sample[META])


def class_pixel_counts(label: np.ndarray) -> np.ndarray:
    """(256,) int64 pixel counts per value; indices 0..18 are the classes, 255 is ignore."""
    return np.bincount(label.ravel(), minlength=256)


def _encode_image(array: np.ndarray, image_format: str) -> bytes:
    buffer = io.BytesIO()
    if image_format == "jpg":
        Image.fromarray(array).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        Image.fromarray(array).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _json_value(value: Any) -> Any:
    """numpy scalars and arrays in provenance (seeds, scores, sizes) become plain JSON."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
