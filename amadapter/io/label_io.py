"""Decode label maps and photos from bytes, with a named error for every bad input.

Pure numpy + PIL; the callers (``transforms/``) fetch the bytes through Beam's
``FileSystems`` so the same code reads local, ``gs://`` and ``s3://`` files.

Label formats (``label_format``):

- ``"ids"``: Cityscapes label IDs (``*_gtFine_labelIds.png``), mapped to train
  IDs through ``amadapter.io.labels.LABEL_ID_TO_TRAIN_ID``;
- ``"train_ids"``: train IDs 0..18 and 255 as is (``*_labelTrainIds.png``,
  BDD100K ``masks/``);
- ``"color"``: colour-coded maps (``*_gtFine_color.png``, BDD100K
  ``colormaps/``), mapped by exact palette match.

For ``ids`` and ``train_ids`` the image must be single-channel (mode L, P or a
16-bit integer mode); a palette ('P') image is read by its indices, never by
its colours. For ``color`` the colour is the label, so a 'P' image is expanded
through its palette.
"""

from __future__ import annotations

import io
from typing import BinaryIO

import numpy as np
from PIL import Image

from amadapter.io.errors import (
    NotALabelMapError,
    SizeMismatchError,
    UnknownLabelIdError,
    UnreadableImageError,
)
from amadapter.io.labels import check_train_ids, colors_to_train_ids, label_ids_to_train_ids

LABEL_FORMATS = ("ids", "train_ids", "color")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ID_MODES = ("L", "P", "I", "I;16", "I;16L", "I;16B")
_COLOR_MODES = ("RGB", "RGBA", "P")


def decode_label_map(data: bytes, path: str, label_format: str) -> np.ndarray:
    """Decode PNG bytes into an (H, W) uint8 map of train IDs (0..18, 255 = ignore).

    ``path`` only names the input in errors. Raises:
    ``UnreadableImageError`` (not a PNG, truncated, corrupt),
    ``NotALabelMapError`` (e.g. RGB where IDs were expected, grey where colours were),
    ``UnknownLabelIdError`` (an ID outside the table / train IDs outside 0..18, 255),
    ``UnknownColorError`` (a colour outside the palette),
    ``ValueError`` for an unknown ``label_format`` (a caller bug, not bad input).
    """
    if label_format not in LABEL_FORMATS:
        raise ValueError(f"label_format must be one of {LABEL_FORMATS}, got {label_format!r}")
    if not data.startswith(PNG_SIGNATURE):
        raise UnreadableImageError(path, "not a PNG file (label maps must be lossless PNG)")
    image = _load(data, path)
    if label_format == "color":
        if image.mode not in _COLOR_MODES:
            raise NotALabelMapError(path, f"expected a colour map, got a mode {image.mode} image")
        return colors_to_train_ids(np.asarray(image.convert("RGB")), path)
    if image.mode not in _ID_MODES:
        raise NotALabelMapError(
            path, f"expected a single-channel map of IDs, got a mode {image.mode} image"
        )
    ids = np.asarray(image)  # for mode P: the palette indices
    if label_format == "ids":
        if ids.dtype != np.uint8:
            # A 16-bit map would wrap around in the uint8 lookup; range-check it first.
            if ids.min(initial=0) < 0 or ids.max(initial=0) > 255:
                raise UnknownLabelIdError(path, "label IDs outside 0..255 are not in the table")
            ids = ids.astype(np.uint8)
        return label_ids_to_train_ids(ids, path)
    return np.ascontiguousarray(check_train_ids(ids, path))


def decode_photo(data: bytes, path: str) -> np.ndarray:
    """Decode image bytes (JPEG, PNG, ...) into an (H, W, 3) uint8 RGB array.

    Raises ``UnreadableImageError`` for truncated, corrupt or non-image bytes.
    No EXIF rotation: label maps have none, so rotating the photo would break
    the pixel correspondence.
    """
    image = _load(data, path)
    return np.asarray(image.convert("RGB"))


def decode_region_mask(data: bytes, path: str) -> np.ndarray:
    """Decode a painted region (any single-channel or colour PNG) into an (H, W) bool
    mask: nonzero pixels are the region. Raises ``UnreadableImageError``."""
    if not data.startswith(PNG_SIGNATURE):
        raise UnreadableImageError(path, "not a PNG file (region masks must be lossless PNG)")
    return np.asarray(_load(data, path).convert("L")) > 0


def peek_image_size(stream: BinaryIO, path: str) -> tuple[int, int]:
    """(width, height) of an image from its header alone; the pixels are not decoded.

    ``stream`` is a readable (ideally seekable) file object positioned at the start.
    Raises ``UnreadableImageError`` when the header is not that of an image.
    """
    try:
        with Image.open(stream) as image:
            return image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise UnreadableImageError(path, f"cannot read the image header: {err}") from None


def check_same_size(
    label_size: tuple[int, int], photo_size: tuple[int, int], label_path: str, photo_path: str
) -> None:
    """Raise ``SizeMismatchError`` naming both files unless the (width, height) sizes agree."""
    if tuple(label_size) != tuple(photo_size):
        raise SizeMismatchError(
            label_path,
            f"label map is {label_size[0]}x{label_size[1]} but its photo {photo_path} "
            f"is {photo_size[0]}x{photo_size[1]} (width x height)",
        )


def _load(data: bytes, path: str) -> Image.Image:
    """Open and fully decode, so truncation surfaces here and not later."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        reason = "empty file" if not data else f"truncated or corrupt image: {err}"
        raise UnreadableImageError(path, reason) from None
