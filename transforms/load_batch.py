"""Decode one synthesis batch right before its model call: refs in, decoded requests out.

A shard's ``ShardWork`` holds only references (paths, keys, seeds), so a worker
holds the pixels of one batch at a time, not of a whole shard (at Cityscapes'
2048x1024 a target's label map is 2 MB and an exemplar's photo and labels 8 MB).
Each distinct exemplar of the batch is decoded once; a target whose exemplar or
label map cannot be read becomes a ``FailedInput`` naming the file and the
reason, and the rest of the batch is rendered.
"""

from __future__ import annotations

from typing import Sequence

from amadapter.io.errors import InputError
from transforms.expand_samples import load_target
from transforms.load_exemplars import load_exemplar
from transforms.records import FailedInput
from transforms.retrieve_exemplars import RetrievedTarget
from transforms.synthesis_request import Exemplar, SynthesisRequest


def load_batch(
    shard: int, planned: Sequence[RetrievedTarget]
) -> tuple[list[SynthesisRequest], list[FailedInput]]:
    """The batch's ``SynthesisRequest`` (in its order) and the targets that cannot be used."""
    exemplars: dict[str, Exemplar | InputError] = {}
    requests, failures = [], []
    for ref, source, score in planned:
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
        requests.append(SynthesisRequest(shard, target, exemplar, float(score)))
    return requests, failures
