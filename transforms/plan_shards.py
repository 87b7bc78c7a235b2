"""Gather each shard's pending inputs into one ``ShardWork``: batches to render + known failures.

``PCollection[(shard, RetrievedTarget | FailedInput)] -> PCollection[ShardWork]``.
Per shard, the targets are cut into batches (``batch_by_exemplar.cut_batches``:
a function of the shard's content alone) and the shards are spread over the
workers. Nothing is decoded here: a ``ShardWork`` holds references (a few
hundred bytes per input cross the shuffles), and the synthesis step decodes
each batch right before its model call (``transforms.load_batch``).
"""

from __future__ import annotations

import apache_beam as beam

from transforms.batch_by_exemplar import cut_batches
from storage.records import FailedInput
from transforms.retrieve_exemplars import RetrievedTarget
from transforms.synthesis_request import ShardWork


class PlanShards(beam.PTransform):
    """See the module docstring."""

    def __init__(self, batch_size: int):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._batch_size = batch_size

    def expand(self, keyed):
        return (
            keyed
            | "GroupByShard" >> beam.GroupByKey()
            | "Plan" >> beam.Map(lambda item, size: plan_shard(*item, size), self._batch_size)
            | "Spread" >> beam.Reshuffle()  # shards over workers, before the expensive step
        )


def plan_shard(shard: int, elements, batch_size: int) -> ShardWork:
    """One shard's ``ShardWork`` from its pending ``RetrievedTarget`` and ``FailedInput``."""
    elements = list(elements)
    failures = [e for e in elements if isinstance(e, FailedInput)]
    retrieved = [e for e in elements if isinstance(e, RetrievedTarget)]
    if len(failures) + len(retrieved) != len(elements):
        raise TypeError("PlanShards takes RetrievedTarget or FailedInput elements")
    batches = cut_batches(retrieved, lambda r: r.exemplar_set, lambda r: r.target.key, batch_size)
    return ShardWork(
        shard=shard,
        batches=tuple(tuple(batch) for batch in batches),
        failures=tuple(sorted(failures, key=lambda f: f.key)),
    )
