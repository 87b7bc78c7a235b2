"""Gather each shard's pending inputs and make them its ``ShardWork``: batches + known failures.

``PCollection[(shard, RetrievedTarget | FailedInput)] -> PCollection[ShardWork]``.
Per shard: the inputs are grouped into one ``ShardPlan`` (paths only: a few
hundred bytes per input cross the shuffle), spread over the workers, and only
then loaded (``load_shard_work``, fused with the synthesis step that follows):
each distinct exemplar and each target's label map is decoded there, a target
whose exemplar or label map cannot be read becomes a ``FailedInput`` that names
the file and the reason, and the usable targets are cut into batches
(``batch_by_exemplar.cut_batches``: a function of the shard's content alone).
"""

from __future__ import annotations

import apache_beam as beam

from amadapter.errors import InputError
from transforms.batch_by_exemplar import cut_batches
from transforms.expand_samples import load_target
from transforms.load_exemplars import load_exemplar
from transforms.records import FailedInput
from transforms.retrieve_exemplars import RetrievedTarget
from transforms.synthesis_request import Exemplar, ShardPlan, ShardWork, SynthesisRequest


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
            | "Plan" >> beam.MapTuple(plan_shard)
            | "Spread" >> beam.Reshuffle()  # shards over workers, before the expensive step
            | "Load" >> beam.Map(load_shard_work, self._batch_size)
        )


def plan_shard(shard: int, elements) -> ShardPlan:
    """One shard's ``ShardPlan`` from its pending ``RetrievedTarget`` and ``FailedInput``."""
    elements = list(elements)
    failures = [e for e in elements if isinstance(e, FailedInput)]
    retrieved = [e for e in elements if isinstance(e, RetrievedTarget)]
    if len(failures) + len(retrieved) != len(elements):
        raise TypeError("PlanShards takes RetrievedTarget or FailedInput elements")
    return ShardPlan(
        shard=shard,
        retrieved=tuple(sorted(retrieved, key=lambda r: r.target.key)),
        failures=tuple(sorted(failures, key=lambda f: f.key)),
    )


def load_shard_work(plan: ShardPlan, batch_size: int) -> ShardWork:
    """Decode a plan's label maps and exemplars (each exemplar once) and cut its batches."""
    failures = list(plan.failures)
    exemplars: dict[str, Exemplar | InputError] = {}
    usable = []
    for ref, source, score in plan.retrieved:
        if source.key not in exemplars:
            try:
                exemplars[source.key] = load_exemplar(source)
            except InputError as error:
                exemplars[source.key] = error
        exemplar = exemplars[source.key]
        if isinstance(exemplar, InputError):
            message = f"exemplar {source.key} of this target: {exemplar}"
            failures.append(FailedInput(ref.key, ref.source, exemplar.code, message))
            continue
        try:
            target = load_target(ref)
        except InputError as error:
            failures.append(FailedInput.from_error(ref.key, ref.source, error))
            continue
        usable.append(SynthesisRequest(plan.shard, target, exemplar, float(score)))
    batches = cut_batches(usable, lambda r: r.exemplar.key, lambda r: r.target.key, batch_size)
    return ShardWork(
        shard=plan.shard,
        batches=tuple(tuple(batch) for batch in batches),
        failures=tuple(sorted(failures, key=lambda f: f.key)),
    )
