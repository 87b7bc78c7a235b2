"""What the synthesis step consumes: a target with its loaded exemplar, and batches of them.

A batch (one element of the synthesis step) is a tuple of ``SynthesisRequest``
formed by ``transforms.batch_by_exemplar``; requests that share an exemplar
share one ``Exemplar`` object, so it is pickled once per batch.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from transforms.expand_samples import Target


@dataclasses.dataclass(frozen=True, eq=False)
class Exemplar:
    """An exemplar photo and its label map, decoded: ``image`` (H, W, 3) uint8 RGB,
    ``labels`` (H, W) uint8 train IDs of the same size; ``key`` is its pool key."""

    key: str
    photo_path: str
    label_path: str
    image: np.ndarray
    labels: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class SynthesisRequest:
    """Render ``target`` with ``exemplar``'s appearance; the result goes to shard ``shard``.
    ``score`` is the retrieval score of the exemplar for this target (provenance)."""

    shard: int
    target: Target
    exemplar: Exemplar
    score: float
