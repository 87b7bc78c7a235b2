"""The entries of an exemplar pool: label maps that come with their photo.

Shared by ``jobs.build_index`` and the augment job's ``--exemplars``, so both read
a pool the same way. Cityscapes and BDD100K pair photos by their own layouts; a
``folder`` pool pairs each label map ``x.png`` with the JPEG beside it
(``x.jpg`` or ``x.jpeg``).
"""

from __future__ import annotations

import dataclasses

from storage.fileio import exists
from storage.label_sources import list_label_sources
from storage.input_reads import read_label_record
from storage.records import LabelSource

FOLDER_PHOTO_EXTENSIONS = (".jpg", ".jpeg")


def pool_sources(
    root: str, dataset: str, split: str | None = None, label_format: str | None = None
) -> list[LabelSource]:
    """``list_label_sources`` with photos paired for ``folder`` pools too."""
    sources = list_label_sources(root, dataset, split, label_format)
    return _with_folder_photos(sources) if dataset == "folder" else sources


def pool_labels(source: LabelSource):
    """A pool entry's train IDs; its photo must exist, with the label map's size."""
    return read_label_record(source, photos="require").train_ids


def _with_folder_photos(sources: list[LabelSource]) -> list[LabelSource]:
    paired = []
    for source in sources:
        stem = source.label_path[: -len(".png")]
        photo = next((stem + e for e in FOLDER_PHOTO_EXTENSIONS if exists(stem + e)), None)
        paired.append(dataclasses.replace(source, photo_path=photo))
    return paired
