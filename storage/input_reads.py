"""Read one input file: a label map (decoded, its photo checked), a photo, or raw bytes.

Every way an input cannot be read is its ``InputError`` (``UnreadableImageError`` naming
the file for a missing, vanished, unpermitted or unreachable one), so the caller turns it
into that input's manifest row.
"""

from __future__ import annotations

import numpy as np

from amadapter.io.errors import MissingPhotoError, UnreadableImageError
from amadapter.io.label_io import check_same_size, decode_label_map, decode_photo, peek_image_size
from storage.fileio import open_file, read_bytes
from storage.records import LabelRecord, LabelSource

# What to do with each label map's photo:
# "ignore": never open it; "check": when it exists, its size must equal the label map's
# (read from its header only); "require": it must exist, and its size must match.
PHOTO_POLICIES = ("ignore", "check", "require")
# What opening one input raises when that input cannot be read: missing, vanished, no
# permission (BeamIOError is an OSError), or a scheme whose filesystem is not installed
# (Beam raises ValueError for gs:// without apache-beam[gcp], s3:// without boto3).
READ_ERRORS = (OSError, ValueError)


def read_label_record(source: LabelSource, photos: str = "ignore") -> LabelRecord:
    """Read and decode one source (and check its photo per ``photos``); raises ``InputError``."""
    if photos not in PHOTO_POLICIES:
        raise ValueError(f"photos must be one of {PHOTO_POLICIES}, got {photos!r}")
    train_ids = decode_label_map(
        read_input_bytes(source.label_path), source.label_path, source.label_format
    )
    if photos == "require" and source.photo_path is None:
        raise MissingPhotoError(
            source.label_path, f"no photo for it in the {source.dataset} layout"
        )
    if photos != "ignore" and source.photo_path is not None:
        check_same_size(
            (train_ids.shape[1], train_ids.shape[0]),
            _photo_size(source.photo_path),
            source.label_path,
            source.photo_path,
        )
    return LabelRecord(
        key=source.key,
        label_path=source.label_path,
        photo_path=source.photo_path,
        train_ids=train_ids,
        dataset=source.dataset,
    )


def read_photo(path: str) -> np.ndarray:
    """A photo (e.g. an exemplar's) as (H, W, 3) uint8 RGB; raises ``UnreadableImageError``."""
    return decode_photo(read_input_bytes(path), path)


def read_input_bytes(path: str) -> bytes:
    """All bytes of an input file; a missing or unreadable file is ``UnreadableImageError``."""
    try:
        return read_bytes(path)
    except READ_ERRORS as error:
        raise UnreadableImageError(path, f"cannot read the file: {error}") from None


def _photo_size(path: str) -> tuple[int, int]:
    try:
        with open_file(path) as stream:
            return peek_image_size(stream, path)
    except READ_ERRORS as error:
        raise UnreadableImageError(path, f"cannot read the file: {error}") from None
