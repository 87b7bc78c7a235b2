"""Gather each shard's pending inputs into one ``ShardWork``: batches to render + known failures.

``PCollection[(shard, RetrievedTarget | FailedInput)] -> PCollection[ShardWork]``.
Per shard: the targets are cut into batches (``batch_by_exemplar.cut_batches``:
a function of the shard's content alone), each distinct exemplar is read once
(``load_exemplars``), and a target whose exemplar cannot be read becomes a
``FailedInput`` that names the exemplar's file and the reason, while the other
targets keep their batches.
"""

from __future__ import annotations

import apache_beam as beam

from amadapter.errors import InputError
from transforms.batch_by_exemplar import cut_batches
from transforms.load_exemplars import load_exemplar
from transforms.records import FailedInput
from transforms.retrieve_exemplars import RetrievedTarget
from transforms.synthesis_request import Exemplar, ShardWork, SynthesisRequest


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
            | "Plan"
            >> beam.Map(lambda item, size: plan_shard(item[0], item[1], size), self._batch_size)
        )


def plan_shard(shard: int, elements, batch_size: int) -> ShardWork:
    """One shard's ``ShardWork`` from its pending ``RetrievedTarget`` and ``FailedInput``."""
    elements = list(elements)
    failures = [e for e in elements if isinstance(e, FailedInput)]
    retrieved = [e for e in elements if isinstance(e, RetrievedTarget)]
    if len(failures) + len(retrieved) != len(elements):
        raise TypeError("PlanShards takes RetrievedTarget or FailedInput elements")
    exemplars: dict[str, Exemplar | InputError] = {}
    usable = []
    for target, source, score in sorted(retrieved, key=lambda r: r.target.key):
        if source.key not in exemplars:
            try:
                exemplars[source.key] = load_exemplar(source)
            except InputError as error:
                exemplars[source.key] = error
        exemplar = exemplars[source.key]
        if isinstance(exemplar, InputError):
            message = f"exemplar {source.key} of this target: {exemplar}"
            failures.append(FailedInput(target.key, target.source, exemplar.code, message))
        else:
            usable.append(SynthesisRequest(shard, target, exemplar, float(score)))
    batches = cut_batches(usable, lambda r: r.exemplar.key, lambda r: r.target.key, batch_size)
    return ShardWork(
        shard=shard,
        batches=tuple(tuple(batch) for batch in batches),
        failures=tuple(sorted(failures, key=lambda f: f.key)),
    )
