"""Attach exemplars to every target: batched queries against an index loaded once per worker.

Usage::

    result = keyed_targets | RetrieveExemplars(index_path, top_k=1, exemplars_per_target=2)
    result.retrieved  # PCollection[(tag, RetrievedTarget(target, (LentExemplar, ...)))]
    result.failures   # PCollection[(tag, FailedInput)]: targets no exemplar can serve

Elements are ``(tag, TargetRef)`` pairs; the tag (the augment job's shard index)
passes through untouched, so nothing has to re-attach it afterwards.

The index (``amadapter.retrieval``) is loaded in ``setup()`` through a
``beam.utils.shared.Shared`` handle, so every DoFn instance of a worker process
uses one copy, and it never travels as a side input. Targets are grouped with
``BatchElements`` and the distinct label maps of a batch are queried together
(a label map with several samples is searched once); label maps are decoded
here, where the query needs their pixels, and leave as paths. With ``top_k`` 1 each
target's first exemplar is the best; with k > 1 a draw among the best k seeded by the
target's own seed (``Target.seed``, derived from its key), so the choice does
not depend on batching, worker or run. With ``exemplars_per_target`` N > 1, up to
N - 1 more exemplars among the best ``COVERAGE_CANDIDATES`` matches lend the target
classes the ones before lack (``amadapter.retrieval.coverage``). The target's own
frame is never returned. A target for which the index has no other frame becomes a
``FailedInput`` with code ``empty_pool``; one whose label map cannot be read
again, a ``FailedInput`` with that map's error.
"""

from __future__ import annotations

import typing

import apache_beam as beam
from apache_beam.utils.shared import Shared

from amadapter.io.errors import EmptyPoolError, InputError
from amadapter.retrieval import ExemplarIndex, ExemplarMatch, draw
from amadapter.retrieval.coverage import class_pixels, cover_classes
from amadapter.retrieval.index import DEFAULT_CANDIDATES
from transforms.expand_samples import TargetRef
from storage.input_reads import read_label_record
from storage.records import FailedInput, LabelSource, LentExemplar

FAILURES = "failures"
COVERAGE_CANDIDATES = 16  # the best layout matches a coverage exemplar is chosen among
DEFAULT_EXEMPLARS_PER_TARGET = 1  # the job's default; bench/RESULTS.md "Coverage" for the choice


class RetrievedTarget(typing.NamedTuple):
    """A target and the exemplars it borrows its appearance from, the first lending
    "the rest" (every pixel the others do not claim)."""

    target: TargetRef
    exemplars: tuple[LentExemplar, ...]

    @property
    def exemplar_set(self) -> str:
        """The exemplars' keys: targets with equal sets share every exemplar branch."""
        return "|".join(lent.source.key for lent in self.exemplars)


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
        exemplars_per_target: int = 1,
        batch_size: int = 64,
        candidates: int = DEFAULT_CANDIDATES,
    ):
        super().__init__()
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        if exemplars_per_target < 1:
            raise ValueError(f"exemplars_per_target must be at least 1, got {exemplars_per_target}")
        self._index_path, self._top_k = index_path, top_k
        self._per_target = exemplars_per_target
        self._batch_size, self._candidates = batch_size, candidates

    def expand(self, targets):
        results = (
            targets
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._batch_size)
            | "Retrieve"
            >> beam.ParDo(
                _RetrieveBatch(
                    self._index_path, self._top_k, self._per_target, self._candidates, Shared()
                )
            ).with_outputs(FAILURES, main="retrieved")
        )
        return RetrieveExemplarsResult(retrieved=results.retrieved, failures=results[FAILURES])


class _IndexHolder:
    """Weak-referenceable wrapper for ``Shared`` (it keeps the index while any DoFn uses it)."""

    def __init__(self, index: ExemplarIndex):
        self.index = index


class _RetrieveBatch(beam.DoFn):
    def __init__(
        self, index_path: str, top_k: int, per_target: int, candidates: int, shared: Shared
    ):
        self._index_path, self._top_k, self._candidates = index_path, top_k, candidates
        self._per_target = per_target
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
        depth = max(self._top_k, COVERAGE_CANDIDATES if self._per_target > 1 else 1)
        ranked = self._holder.index.query(
            [r.train_ids for r in records.values()],
            k=depth,
            target_paths=[r.label_path for r in records.values()],
            candidates=self._candidates,
        ) if records else []
        ranked_by_key = dict(zip(records, ranked))
        covering = self._per_target > 1  # class counts only where coverage exemplars are sought
        pixels = {key: class_pixels(r.train_ids) for key, r in records.items()} if covering else {}
        for tag, target in tagged:
            matches = ranked_by_key.get(target.label.key)
            if matches:
                first = draw(matches[: self._top_k], target.seed if self._top_k > 1 else None)
                chosen = [(first, None)]
                if covering:
                    chosen = cover_classes(
                        first, matches[:COVERAGE_CANDIDATES], pixels[target.label.key], self._per_target
                    )
                lent = tuple(
                    LentExemplar(match_source(m), m.score, classes) for m, classes in chosen
                )
                yield tag, RetrievedTarget(target, lent)
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
