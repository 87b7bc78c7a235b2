"""Records of the synthesis step: a shard's plan, its decoded work, and its results.

A ``ShardPlan`` (paths only) is what crosses the shuffle before synthesis; the
step right before the model decodes it into a ``ShardWork``: the shard's targets
as batches of ``SynthesisRequest`` (formed by ``transforms.batch_by_exemplar``)
plus its known failures. Requests that share an exemplar share one ``Exemplar``
object.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from transforms.expand_samples import Target
from transforms.records import FailedInput, Sample


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """One shard's pending inputs, by reference: ``retrieved`` (``RetrievedTarget``, sorted
    by target key) and ``failures`` (``FailedInput``, sorted by key)."""

    shard: int
    retrieved: tuple
    failures: tuple[FailedInput, ...]


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


@dataclasses.dataclass(frozen=True, eq=False)
class ShardWork:
    """Everything one shard still needs: the element of the synthesis step.

    ``batches``: the shard's targets cut into model calls (``batch_by_exemplar``);
    ``failures``: its inputs already known to fail (unreadable label maps,
    unreadable exemplars). A shard is rendered and written by one worker, right
    after another (same fused stage), so each finished shard is committed as soon
    as it is done and survives a crash of the run.
    """

    shard: int
    batches: tuple[tuple[SynthesisRequest, ...], ...]
    failures: tuple[FailedInput, ...]

    @property
    def requests(self) -> list[SynthesisRequest]:
        return [request for batch in self.batches for request in batch]

    def __len__(self) -> int:
        """The shard's inputs (RunInference counts elements of a "batch" with ``len``)."""
        return sum(len(batch) for batch in self.batches) + len(self.failures)


@dataclasses.dataclass(frozen=True, eq=False)
class ShardResult:
    """A rendered shard, ready to write: ``samples`` in any order, plus ``failures``."""

    shard: int
    samples: tuple[Sample, ...]
    failures: tuple[FailedInput, ...]
