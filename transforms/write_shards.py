"""Write samples grouped by shard (rules in ``transforms.shards``).

Usage::

    keyed = (samples_and_failures          # PCollection of Sample | FailedInput
             | AssignShards(shard_size))   # -> (shard_index, element)
    written = keyed | WriteShards(output, prefix, image_format="jpg")   # -> shard indices
    written | AssembleManifest(output, prefix, FileSystems.join(output, MANIFEST_FILE))

``AssignShards`` (``transforms.assign_shards``) accepts any element with a ``key``.
The augment job writes its shards without this shuffle (``write_shard_results``).
"""

from __future__ import annotations

import apache_beam as beam

from amadapter.io.sample_format import image_member
from amadapter.io.shard_format import shard_name
from transforms.records import FailedInput, Sample
from transforms.synthesis_request import ShardResult
from transforms.write_shard_results import WriteShardResults


class WriteShards(beam.PTransform):
    """``PCollection[(shard_index, Sample | FailedInput)] -> PCollection[int]`` shard indices.

    Groups by shard, then writes each with the job's own writer (``WriteShardResults``:
    tar, manifest part, then the stats file, atomically), for samples made by other
    means than the augment job (which writes each shard as it is rendered).
    """

    def __init__(self, output: str, prefix: str, image_format: str = "jpg"):
        super().__init__()
        # Validate here, at graph construction, rather than on a worker mid-run.
        shard_name(prefix, 0)
        image_member(image_format)
        self._output, self._prefix, self._image_format = output, prefix, image_format

    def expand(self, keyed):
        writer = WriteShardResults(self._output, self._prefix, self._image_format, None)
        return (
            keyed
            | "GroupByShard" >> beam.GroupByKey()
            | "AsShardResult" >> beam.MapTuple(_shard_result)
            | "Write" >> beam.ParDo(writer)
        )


def _shard_result(index: int, elements) -> ShardResult:
    elements = list(elements)
    samples = tuple(e for e in elements if isinstance(e, Sample))
    failures = tuple(e for e in elements if isinstance(e, FailedInput))
    if len(samples) + len(failures) != len(elements):
        unknown = {type(e).__name__ for e in elements} - {"Sample", "FailedInput"}
        raise TypeError(f"WriteShards takes Sample or FailedInput elements, got {unknown}")
    return ShardResult(index, samples, failures)
