"""Exemplar pools without label maps (``--pool-labels-from DIR``): photos labelled once by a
segmenter, their predicted maps kept with the index.

Teams hold far more unlabelled footage than labelled frames, and every exemplar needs a
label map (retrieval, the categorical cost and the adapter read it). So the pool's
photos are listed alone (``photo_pool_sources``: the photos of a dataset root, whose label
maps are ignored, or of a folder of images), and when the index is built each photo is
segmented once (``PoolLabeller``) and its predicted train-ID map written as a PNG under
the index:

    INDEX/labels-<segmenter sha256, 12 digits>/<key>.png

That path is the entry's ``label_path`` (format ``train_ids``), so everything downstream
reads a predicted map exactly as it reads a dataset's. The folder is named by the
segmenter, so rebuilding with another segmenter never overwrites the maps an existing
index lists. An entry's key is the one its label map would give (``storage.label_sources``),
so a frame is the same exemplar whether its labels are the dataset's or predicted.

The segmenter is a directory in either format the quality filter reads
(``amadapter.models.segmentation_models``); its sha256 (``storage.fingerprint.checkpoint_sha256``)
is recorded in the index (``PoolLabeller.provenance``), the render fingerprint and every
sample's json. A photo that cannot be read is an ``UnreadableImageError`` naming it: the
build skips the entry with that reason (``storage.exemplar_pool.write_skipped_entries``).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import threading

import numpy as np
from PIL import Image

from amadapter.io.keys import safe_key
from amadapter.models.segmentation_models import (
    PROJECT_WEIGHTS, TRANSFORMERS_CONFIG, SegmentationModel, SegmenterFormatError, load_segmentation_model,
)  # fmt: skip
from storage.dataset_layouts import layout_of, normalise_root
from storage.fileio import exists, local_model_directory, write_atomically
from storage.fingerprint import checkpoint_sha256
from storage.input_reads import read_photo
from storage.photo_sources import list_photos
from storage.records import LabelSource

PREDICTED_FORMAT = "train_ids"


@dataclasses.dataclass(frozen=True)
class PoolLabeller:
    """Labels pool photos with the segmenter at ``segmenter`` (sha256 ``sha256``). Picklable:
    each process loads the model once (``_loaded_segmenter``) and its threads share it."""

    segmenter: str
    sha256: str

    @classmethod
    def of(cls, segmenter: str) -> "PoolLabeller":
        """The labeller of the segmenter directory ``segmenter``; ``SegmenterFormatError``
        when it holds neither format's file (checked without loading the weights)."""
        check_segmenter_directory(segmenter)
        return cls(segmenter, checkpoint_sha256(segmenter))

    def provenance(self) -> dict:
        """What the index and every sample record of the predicted labels."""
        return {"predicted_by": self.segmenter, "segmenter_sha256": self.sha256}

    def labels_dir(self, index_path: str) -> str:
        return f"{index_path.rstrip('/')}/labels-{self.sha256[:12]}"

    def __call__(self, source: LabelSource) -> np.ndarray:
        """The photo's predicted train IDs at its own size, written to ``source.label_path``
        (atomically) and returned; ``UnreadableImageError`` for a photo that cannot be read."""
        photo = read_photo(source.photo_path)
        logits = _loaded_segmenter(self.segmenter, self.sha256).logits(photo[None])
        train_ids = logits.argmax(dim=1)[0].numpy().astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(train_ids).save(buffer, format="PNG")
        write_atomically(source.label_path, buffer.getvalue(), "image/png")
        return train_ids


def check_segmenter_directory(path: str) -> None:
    if not any(exists(f"{path.rstrip('/')}/{name}") for name in (PROJECT_WEIGHTS, TRANSFORMERS_CONFIG)):
        raise SegmenterFormatError(
            f"{path}: no segmenter there (expected {PROJECT_WEIGHTS} or {TRANSFORMERS_CONFIG}: "
            "a jobs.train_segmenter output or a transformers semantic-segmentation checkpoint)"
        )


_LOAD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2)
def _cached_segmenter(segmenter: str, sha256: str) -> SegmentationModel:
    with local_model_directory(segmenter) as directory:
        return load_segmentation_model(directory)


def _loaded_segmenter(segmenter: str, sha256: str) -> SegmentationModel:
    """The process's one copy of the segmenter (keyed by its hash too: a directory rewritten
    in place is another model). The lock keeps concurrent first calls to one load."""
    with _LOAD_LOCK:
        return _cached_segmenter(segmenter, sha256)


def photo_pool_sources(root: str, dataset: str, split: str | None, labels_dir: str) -> list[LabelSource]:
    """One entry per photo of ``root`` (``dataset`` layout, ``split``), sorted by key, its
    ``label_path`` the predicted map's place under ``labels_dir``; ``EmptyRootError`` when
    the root has no photo."""
    root = normalise_root(root)
    layout = layout_of(dataset)
    sources = []
    for photo in list_photos(root, dataset, split):
        key = safe_key(*layout.photo_frame(root, split, photo))
        sources.append(LabelSource(key, f"{labels_dir}/{key}.png", photo, PREDICTED_FORMAT, dataset))
    return sorted(sources, key=lambda s: s.key)
