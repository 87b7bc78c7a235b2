"""Records of the synthesis step: a shard's work, the decoded requests of a batch, results.

One element of the synthesis step is a ``ShardWork``: a shard's targets as
batches of ``RetrievedTarget`` references (formed by
``transforms.batch_by_exemplar``) plus its known failures. The synthesis step
decodes one batch at a time into ``SynthesisRequest`` (``transforms.load_batch``);
requests of a batch that share an exemplar share one ``Exemplar`` object. A
request reads one exemplar or several, each lending part of the target
(``LentPart``: the decoded exemplar, what it lends, and its painted mask if any).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from amadapter.pipelines.exemplar_regions import ExemplarRegion

from transforms.expand_samples import Target
from storage.records import FailedInput, LentExemplar, Sample


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
class LentPart:
    """One exemplar of a request, decoded: ``lent`` says what it lends; ``mask`` is the
    painted region ((H, W) bool at the target label map's size) when ``lent`` names one."""

    exemplar: Exemplar
    lent: LentExemplar
    mask: np.ndarray | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class SynthesisRequest:
    """Render ``target`` with the appearance of its ``parts`` (the first lends the rest);
    the result goes to shard ``shard``."""

    shard: int
    target: Target
    parts: tuple[LentPart, ...]

    @property
    def exemplar(self) -> Exemplar:
        """The first (primary) exemplar."""
        return self.parts[0].exemplar


@dataclasses.dataclass(frozen=True)
class ShardWork:
    """Everything one shard still needs: the element of the synthesis step.

    ``batches``: the shard's targets (``RetrievedTarget``: paths, keys, seeds) cut
    into model calls (``batch_by_exemplar``); ``failures``: its inputs already known
    to fail (unreadable label maps, no exemplar). A shard is rendered and written
    by one worker, right
    after another (same fused stage), so each finished shard is committed as soon
    as it is done and survives a crash of the run.
    """

    shard: int
    batches: tuple[tuple, ...]  # of RetrievedTarget
    failures: tuple[FailedInput, ...]

    @property
    def requests(self) -> list:
        """Every target of the shard (``RetrievedTarget``), batch after batch."""
        return [request for batch in self.batches for request in batch]

    def __len__(self) -> int:
        """The shard's inputs (RunInference counts elements of a "batch" with ``len``)."""
        return sum(len(batch) for batch in self.batches) + len(self.failures)


@dataclasses.dataclass(frozen=True, eq=False)
class ShardResult:
    """A rendered shard, ready to write: ``samples`` in any order, plus ``failures``; or, with
    ``stop`` (a ``transforms.synthesis_failures.RunStoppingError``), the error that stops the
    run there, raised by the next step instead of writing the shard."""

    shard: int
    samples: tuple[Sample, ...]
    failures: tuple[FailedInput, ...]
    stop: Exception | None = None


def request_regions(request: SynthesisRequest, index_of=None) -> list[ExemplarRegion]:
    """The request's parts as ``ExemplarRegion``s; ``index_of(exemplar key)`` gives the
    exemplar's index among the model call's exemplars (default: its part's position)."""
    regions = []
    for position, part in enumerate(request.parts):
        index = position if index_of is None else index_of(part.exemplar.key)
        classes = part.lent.classes
        regions.append(ExemplarRegion(index, None if classes is None else tuple(classes), part.mask))
    return regions
