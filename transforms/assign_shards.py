"""Place every input in a shard, with nothing that grows with the input count on one worker.

Rule. Each key gets a bucket, ``bucket_of(group(key))``: the first 8 bytes of the
sha256 of its group, modulo ``BUCKETS`` (65536). ``group`` maps a key to the key of
the label map it came from (``transforms.expand_samples.label_key``), so the samples
of one label map share a bucket and sit next to each other. Inputs are ordered by
(bucket, group, key); the input of rank ``r`` in that order goes to the
``r // shard_size``-th FREE shard index: the indices not held by a finished shard
of the output, in increasing order. Keys of finished shards keep their shard.

Why this scheme. A hash bucket is bounded in size whatever the key distribution
(prefix buckets are not: every Cityscapes key of a city shares its prefix). With a
fixed bucket count, the per-bucket counts (one fixed-size int64 array, summed by a
combiner) and so the offsets every worker needs (the only side input) are 512 KB
at any input size. Ranks inside a bucket come from one group per bucket (n / 65536
inputs on average: 15 at a million, 15 000 at a billion), smaller than a shard's
group in the steps after. Shard ranges are contiguous in (bucket, group, key)
order, so every shard but the last is full.

Determinism. The same key set, shard size and finished shards give the same
shards, whichever worker or order.

Incremental runs. Keys already in a finished shard keep it (read from the stats
files, joined by key, never gathered in one place); the others ("fresh": new
inputs, and inputs of shards a killed run did not finish) fill the free indices in
order. After a kill, the fresh keys are exactly the ones of the unfinished shards,
in the same order, so they land in the same shards as an uninterrupted run; with
a grown input set and every old shard finished, new inputs go to new shards after
the last one and no finished shard changes. A key in a finished shard that is no
longer in the input stays in that shard (see ``transforms.skip_finished``).
"""

from __future__ import annotations

import hashlib
import typing
from typing import Callable, Iterable, Sequence

import apache_beam as beam
import numpy as np

from amadapter.io.shard_format import shard_keys
from storage.shards import read_stats_file

BUCKETS = 1 << 16
_FRESH = "fresh"


def _identity(key: str) -> str:
    return key


def bucket_of(group: str) -> int:
    """The bucket of a group key: stable across processes and runs (sha256, not ``hash``)."""
    return int.from_bytes(hashlib.sha256(group.encode()).digest()[:8], "big") % BUCKETS


class BucketCounts(beam.CombineFn):
    """Buckets -> their counts as one int64 array of ``BUCKETS`` (fixed size at any input size)."""

    def create_accumulator(self):
        return np.zeros(BUCKETS, dtype=np.int64)

    def add_input(self, counts, bucket):
        counts[bucket] += 1
        return counts

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        total = next(accumulators).copy()
        for counts in accumulators:
            total += counts
        return total

    def extract_output(self, counts):
        return counts


def bucket_offsets(counts: np.ndarray) -> np.ndarray:
    """Per-bucket counts -> the rank of each bucket's first key."""
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


class FreeShards(typing.NamedTuple):
    """Shard indices fresh keys may take: ``gaps`` (free indices below ``next_index``, sorted),
    then ``next_index``, ``next_index + 1``, ...; ``next_index`` is one past the last finished."""

    gaps: tuple[int, ...]
    next_index: int

    @classmethod
    def around(cls, finished: Iterable[int]) -> "FreeShards":
        taken = set(finished)
        end = max(taken) + 1 if taken else 0
        return cls(tuple(i for i in range(end) if i not in taken), end)

    def shard(self, rank: int, shard_size: int) -> int:
        """The shard of the fresh key of rank ``rank``."""
        slot = rank // shard_size
        return self.gaps[slot] if slot < len(self.gaps) else self.next_index + slot - len(self.gaps)


def assign_shards(
    keys: Iterable[str],
    shard_size: int,
    group: Callable[[str], str] = _identity,
    free: FreeShards = FreeShards((), 0),
) -> dict[str, int]:
    """Key -> shard of fresh ``keys`` by the module's rule, in one process (tests and benches:
    ``AssignShards`` computes the same without gathering the keys). Duplicates: ValueError."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    ordered = sorted(keys, key=lambda k: _order(k, group))
    _refuse_duplicates(ordered)
    return {key: free.shard(rank, shard_size) for rank, key in enumerate(ordered)}


class AssignShards(beam.PTransform):
    """``PCollection[element with .key] -> PCollection[(shard_index, element)]``.

    ``finished``: ``{shard index: stats path}`` of the output's finished shards, whose
    keys keep their shard; ``group``: key -> group key (default: the key itself).
    Every key must be unique (a duplicate is a ValueError on the worker that sees it).
    """

    def __init__(
        self,
        shard_size: int,
        finished: dict[int, str] | None = None,
        group: Callable[[str], str] | None = None,
    ):
        super().__init__()
        if shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {shard_size}")
        self._shard_size = shard_size
        self._finished = dict(finished or {})
        self._group = group or _identity

    def expand(self, elements):
        if self._finished:
            placed, fresh = self._keep_finished(elements)
        else:  # nothing to join with: every input is fresh
            placed, fresh = None, elements
        free = FreeShards.around(self._finished)
        bucketed = fresh | "Bucket" >> beam.Map(
            lambda element, group: (bucket_of(group(element.key)), element), self._group
        )
        offsets = (
            bucketed
            | "Buckets" >> beam.Keys()
            | "CountPerBucket" >> beam.CombineGlobally(BucketCounts())
            | "Offsets" >> beam.Map(bucket_offsets)
        )
        ranked = (
            bucketed
            | "GroupByBucket" >> beam.GroupByKey()
            | "Rank"
            >> beam.FlatMap(
                _rank_bucket,
                beam.pvalue.AsSingleton(offsets),
                self._group,
                free,
                self._shard_size,
            )
        )
        if placed is None:
            return ranked
        return (placed, ranked) | "AllPlaced" >> beam.Flatten()

    def _keep_finished(self, elements):
        """Join the inputs with the keys of the finished shards: (placed, fresh)."""
        earlier = (
            elements.pipeline
            | "FinishedStats" >> beam.Create(sorted(self._finished.items()))
            | "SpreadStats" >> beam.Reshuffle()
            | "FinishedKeys"
            >> beam.FlatMapTuple(
                lambda shard, path: ((key, shard) for key in shard_keys(read_stats_file(path)))
            )
        )
        joined = (
            {"input": elements | "ByKey" >> beam.Map(lambda e: (e.key, e)), "earlier": earlier}
            | "JoinFinished" >> beam.CoGroupByKey()
            | "Place" >> beam.FlatMap(_place).with_outputs(_FRESH, main="placed")
        )
        return joined.placed, joined[_FRESH]


def _place(joined):
    """A key with its input and, if any, its finished shard: keep the shard, else fresh."""
    key, groups = joined
    inputs, shards = list(groups["input"]), list(groups["earlier"])
    if len(inputs) > 1:
        raise ValueError(f"duplicate sample key {key!r}: keys must be unique per run")
    if not inputs:  # in a finished shard, no longer an input: the shard keeps it
        return
    if shards:
        yield shards[0], inputs[0]
    else:
        yield beam.pvalue.TaggedOutput(_FRESH, inputs[0])


def _rank_bucket(bucket_and_elements, offsets: Sequence[int], group, free, shard_size: int):
    bucket, elements = bucket_and_elements
    ordered = sorted(elements, key=lambda e: _order(e.key, group))
    _refuse_duplicates([e.key for e in ordered])
    for rank, element in enumerate(ordered, int(offsets[bucket])):
        yield free.shard(rank, shard_size), element


def _order(key: str, group) -> tuple[int, str, str]:
    grouped = group(key)
    return bucket_of(grouped), grouped, key


def _refuse_duplicates(ordered_keys: Sequence[str]) -> None:
    for previous, current in zip(ordered_keys, ordered_keys[1:]):
        if previous == current:
            raise ValueError(f"duplicate sample key {current!r}: keys must be unique per run")
