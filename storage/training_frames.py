"""Random access to (photo, train IDs) frames of a dataset root, for the training jobs.

Listing and reading go through ``label_sources`` and ``fileio`` (Beam
``FileSystems``), so roots on ``gs://`` or ``s3://`` work as in the augment job.
Frames without a photo are left out (training needs the photo); a frame that
cannot be read raises its ``InputError`` when loaded, and the training batch
sources skip it (``amadapter.training.data``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from amadapter.io.errors import EmptyRootError
from storage.label_sources import list_label_sources
from storage.input_reads import read_label_record, read_photo


def frame_loader(
    root: str, dataset: str, split: str | None = None, label_format: str | None = None
) -> tuple[Callable[[int], tuple[np.ndarray, np.ndarray]], int]:
    """``(load_frame, num_frames)`` over the frames of ``root`` that have a photo."""
    sources = [s for s in list_label_sources(root, dataset, split, label_format) if s.photo_path is not None]
    if not sources:
        raise EmptyRootError(root, f"no {dataset} frames with photos (split {split!r})")

    def load_frame(index: int) -> tuple[np.ndarray, np.ndarray]:
        source = sources[index]
        record = read_label_record(source, photos="require")  # also checks the photo's size
        return read_photo(source.photo_path), record.train_ids

    return load_frame, len(sources)
