"""The entries of an exemplar pool: label maps that come with their photo, or photos
labelled by a segmenter (``--pool-labels-from``, ``storage.unlabelled_pool``).

Shared by ``jobs.build_index`` and the augment job's ``--exemplars``, so both read
a pool the same way (``exemplar_pool``). Cityscapes and BDD100K pair photos by their
own layouts; a ``folder`` pool pairs each label map ``x.png`` with the JPEG beside it
(``x.jpg`` or ``x.jpeg``). A build writes the entries it could not use as manifest rows
(status ``failed``, the code and the message naming the file) to
``INDEX/skipped.parquet``: skipped entries are read again by every update, so the file
of the latest build lists all the index lacks.
"""

from __future__ import annotations

import dataclasses

from typing import Callable, NamedTuple

import numpy as np

from amadapter.io.errors import InputError
from storage.fileio import exists
from storage.input_reads import read_label_record
from storage.label_sources import list_label_sources
from storage.manifest import write_manifest
from storage.records import LabelSource
from storage.unlabelled_pool import PoolLabeller, photo_pool_sources

FOLDER_PHOTO_EXTENSIONS = (".jpg", ".jpeg")
SKIPPED_FILE = "skipped.parquet"


class ExemplarPool(NamedTuple):
    """What an index build reads: the entries, how to read one's train IDs, and who
    predicted them (None: the pool's own label maps)."""

    sources: list[LabelSource]
    read_label: Callable[[LabelSource], np.ndarray]
    pool_labels: dict | None


def exemplar_pool(
    root: str,
    dataset: str,
    split: str | None,
    label_format: str | None,
    index_path: str,
    labeller: PoolLabeller | None = None,
) -> ExemplarPool:
    """The pool at ``root``: its labelled entries, or with ``labeller`` (``--pool-labels-from``)
    its photos, labelled by it into ``index_path``."""
    if labeller is None:
        return ExemplarPool(pool_sources(root, dataset, split, label_format), pool_labels, None)
    sources = photo_pool_sources(root, dataset, split, labeller.labels_dir(index_path))
    return ExemplarPool(sources, labeller, labeller.provenance())


def write_skipped_entries(index_path: str, skipped: list[tuple[str, InputError]]) -> str:
    """The build's skipped entries as manifest rows in ``INDEX/skipped.parquet``; its path."""
    rows = [
        {"key": key, "source": error.path, "status": "failed", "shard": None,
         "error_code": error.code, "error": str(error)}
        for key, error in skipped
    ]  # fmt: skip
    path = f"{index_path.rstrip('/')}/{SKIPPED_FILE}"
    write_manifest(path, rows)
    return path


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
