"""Small records passed between transforms.

Plain module-level dataclasses, so Beam pickles them on any runner. Records
that hold numpy arrays compare by identity (``eq=False``): element-wise array
equality has no single truth value.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from amadapter.io.errors import InputError


@dataclasses.dataclass(frozen=True)
class LabelSource:
    """One label map found under a dataset root, not yet read.

    ``key`` is WebDataset-safe (``amadapter.io.keys.safe_key``); ``photo_path`` is
    the frame's photo where the dataset layout has one on disk, else ``None``;
    ``label_format`` is one of ``amadapter.io.label_io.LABEL_FORMATS``.
    """

    key: str
    label_path: str
    photo_path: str | None
    label_format: str
    dataset: str


@dataclasses.dataclass(frozen=True, eq=False)
class LabelRecord:
    """A decoded label map: ``train_ids`` is (H, W) uint8, train IDs 0..18 and 255."""

    key: str
    label_path: str
    photo_path: str | None
    train_ids: np.ndarray
    dataset: str


@dataclasses.dataclass(frozen=True)
class FailedInput:
    """One input that could not be used; ``error_code`` is an ``InputError.code``.

    ``source`` is the input's path (usually the label map); ``message`` names the
    file and the reason.
    """

    key: str
    source: str
    error_code: str
    message: str

    @classmethod
    def from_error(cls, key: str, source: str, error: InputError) -> "FailedInput":
        return cls(key=key, source=source, error_code=error.code, message=str(error))


@dataclasses.dataclass(frozen=True)
class LentExemplar:
    """A pool entry a target reads, and what it lends: the target pixels of ``classes``
    (train IDs), of the painted mask at ``mask_path`` (a PNG, nonzero = lent, at the target
    label map's size), or, with neither, every pixel no other exemplar of the target
    claims ("the rest"). ``score`` is the retrieval score, None for an exemplar the user
    named (``--exemplar-map``)."""

    source: LabelSource
    score: float | None = None
    classes: tuple[int, ...] | None = None
    mask_path: str | None = None

    @property
    def is_rest(self) -> bool:
        return self.classes is None and self.mask_path is None


@dataclasses.dataclass(frozen=True, eq=False)
class Sample:
    """One finished sample for a shard.

    ``image`` is (H, W, 3) uint8 RGB; ``label`` is (H, W) uint8 train IDs of the
    same size; ``meta`` is JSON-serialisable provenance and must hold
    ``"source"``, the path of the label map the sample came from (the manifest
    reports it).
    """

    key: str
    image: np.ndarray
    label: np.ndarray
    meta: dict[str, Any]
