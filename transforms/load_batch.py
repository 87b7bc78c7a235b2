"""Decode one synthesis batch right before its model call: refs in, decoded requests out.

A shard's ``ShardWork`` holds only references (paths, keys, seeds), so a worker
holds the pixels of one batch at a time, not of a whole shard (at Cityscapes'
2048x1024 a target's label map is 2 MB and an exemplar's photo and labels 8 MB).
Each distinct exemplar of the batch is decoded once; a target whose exemplar,
label map or region mask cannot be read, or whose regions do not fit its label
map (``amadapter.pipelines.exemplar_regions``: overlapping assignments, a mask of
another size), becomes a ``FailedInput`` naming the file and the reason, and the
rest of the batch is rendered.
"""

from __future__ import annotations

from typing import Sequence

from amadapter.io.errors import InputError
from amadapter.io.label_io import decode_region_mask
from amadapter.pipelines.exemplar_regions import region_slots
from transforms.expand_samples import load_target
from transforms.load_exemplars import load_exemplar
from storage.input_reads import read_input_bytes
from storage.records import FailedInput, LentExemplar
from transforms.retrieve_exemplars import RetrievedTarget
from transforms.synthesis_request import Exemplar, LentPart, SynthesisRequest, request_regions


def load_batch(
    shard: int, planned: Sequence[RetrievedTarget]
) -> tuple[list[SynthesisRequest], list[FailedInput]]:
    """The batch's ``SynthesisRequest`` (in its order) and the targets that cannot be used."""
    exemplars: dict[str, Exemplar | InputError] = {}
    requests, failures = [], []
    for ref, lent in planned:
        try:
            parts = tuple(_part(item, exemplars) for item in lent)
            target = load_target(ref)
            request = SynthesisRequest(shard, target, parts)
            if len(parts) > 1 or not parts[0].lent.is_rest:  # check the regions before the call
                region_slots(target.record.train_ids, request_regions(request), name=ref.source)
        except InputError as error:
            failures.append(FailedInput.from_error(ref.key, ref.source, error))
            continue
        requests.append(request)
    return requests, failures


def _part(lent: LentExemplar, exemplars: dict[str, Exemplar | InputError]) -> LentPart:
    source = lent.source
    if source.key not in exemplars:
        try:
            exemplars[source.key] = load_exemplar(source)
        except InputError as error:
            exemplars[source.key] = error
    exemplar = exemplars[source.key]
    if isinstance(exemplar, InputError):
        raise type(exemplar)(exemplar.path, f"exemplar {source.key} of this target: {exemplar.reason}")
    mask = None
    if lent.mask_path is not None:
        mask = decode_region_mask(read_input_bytes(lent.mask_path), lent.mask_path)
    return LentPart(exemplar, lent, mask)
