"""Attach an exemplar to every target: batched queries against an index loaded once per worker.

Usage::

    result = keyed_targets | RetrieveExemplars(index_path, top_k=args.exemplar_topk)
    result.retrieved  # PCollection[(tag, RetrievedTarget(target, exemplar LabelSource, score))]
    result.failures   # PCollection[(tag, FailedInput)]: targets no exemplar can serve

Elements are ``(tag, TargetRef)`` pairs; the tag (the augment job's shard index)
passes through untouched, so nothing has to re-attach it afterwards.

The index (``amadapter.retrieval``) is loaded in ``setup()`` through a
``beam.utils.shared.Shared`` handle, so every DoFn instance of a worker process
uses one copy, and it never travels as a side input. Targets are grouped with
``BatchElements`` and the distinct label maps of a batch are queried together
(a label map with several samples is searched once); label maps are decoded
here, where the query needs their pixels, and leave as paths. With ``top_k`` 1 each
target gets the best exemplar; with k > 1 a draw among the best k seeded by the
target's own seed (``Target.seed``, derived from its key), so the choice does
not depend on batching, worker or run. The target's own frame is never
returned. A target for which the index has no other frame becomes a
``FailedInput`` with code ``empty_pool``; one whose label map cannot be read
again, a ``FailedInput`` with that map's error.
"""

from __future__ import annotations

import typing

import apache_beam as beam
from apache_beam.utils.shared import Shared

from amadapter.io.errors import EmptyPoolError, InputError
from amadapter.retrieval import ExemplarIndex, ExemplarMatch, draw
from amadapter.retrieval.index import DEFAULT_CANDIDATES
from transforms.expand_samples import TargetRef
from transforms.read_label_maps import read_label_record
from transforms.records import FailedInput, LabelSource

FAILURES = "failures"


class RetrievedTarget(typing.NamedTuple):
    """A target and the pool entry it borrows its appearance from; ``score`` is the exact
    layout score (``amadapter.retrieval.score``)."""

    target: TargetRef
    exemplar: LabelSource
    score: float


class RetrieveExemplarsResult(typing.NamedTuple):
    retrieved: beam.PCollection  # of (tag, RetrievedTarget)
    failures: beam.PCollection  # of (tag, FailedInput)


class RetrieveExemplars(beam.PTransform):
    """``PCollection[(tag, TargetRef)] -> RetrieveExemplarsResult``; see the module docstring.

    ``batch_size`` caps the targets per query batch; ``candidates`` is the number
    of pool entries kept by the index's coarse scan and bounded per label map.
    """

    def __init__(
        self,
        index_path: str,
        top_k: int = 1,
        batch_size: int = 64,
        candidates: int = DEFAULT_CANDIDATES,
    ):
        super().__init__()
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        self._index_path, self._top_k = index_path, top_k
        self._batch_size, self._candidates = batch_size, candidates

    def expand(self, targets):
        results = (
            targets
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._batch_size)
            | "Retrieve"
            >> beam.ParDo(
                _RetrieveBatch(self._index_path, self._top_k, self._candidates, Shared())
            ).with_outputs(FAILURES, main="retrieved")
        )
        return RetrieveExemplarsResult(retrieved=results.retrieved, failures=results[FAILURES])


class _IndexHolder:
    """Weak-referenceable wrapper for ``Shared`` (it keeps the index while any DoFn uses it)."""

    def __init__(self, index: ExemplarIndex):
        self.index = index


class _RetrieveBatch(beam.DoFn):
    def __init__(self, index_path: str, top_k: int, candidates: int, shared: Shared):
        self._index_path, self._top_k, self._candidates = index_path, top_k, candidates
        self._shared = shared
        self._holder: _IndexHolder | None = None

    def setup(self):
        self._holder = self._shared.acquire(
            lambda: _IndexHolder(ExemplarIndex.load(self._index_path)), tag=self._index_path
        )

    def process(self, tagged: list[tuple]):
        records, failed = {}, {}  # one read and one query per distinct label map
        for _, target in tagged:
            if target.label.key not in records and target.label.key not in failed:
                try:
                    records[target.label.key] = read_label_record(target.label)
                except InputError as error:
                    failed[target.label.key] = error
        ranked = self._holder.index.query(
            [r.train_ids for r in records.values()],
            k=self._top_k,
            target_paths=[r.label_path for r in records.values()],
            candidates=self._candidates,
        ) if records else []
        ranked_by_key = dict(zip(records, ranked))
        for tag, target in tagged:
            matches = ranked_by_key.get(target.label.key)
            if matches:
                match = draw(matches, target.seed if self._top_k > 1 else None)
                yield tag, RetrievedTarget(target, match_source(match), match.score)
                continue
            error = failed.get(target.label.key) or EmptyPoolError(
                self._index_path,
                f"no exemplar other than the target's own frame ({target.source})",
            )
            yield beam.pvalue.TaggedOutput(
                FAILURES, (tag, FailedInput.from_error(target.key, target.source, error))
            )


def match_source(match: ExemplarMatch) -> LabelSource:
    return LabelSource(
        key=match.key,
        label_path=match.label_path,
        photo_path=match.photo_path,
        label_format=match.label_format,
        dataset=match.dataset,
    )
