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
from transforms.records import FailedInput, Sample
from transforms.shards import shard_name, write_shard


class WriteShards(beam.PTransform):
    """``PCollection[(shard_index, Sample | FailedInput)] -> PCollection[int]`` shard indices.

    Groups by shard and writes each shard's tar, manifest part and stats file
    (atomically, see ``transforms.shards.write_shard``).
    """

    def __init__(self, output: str, prefix: str, image_format: str = "jpg"):
        super().__init__()
        # Validate here, at graph construction, rather than on a worker mid-run.
        shard_name(prefix, 0)
        image_member(image_format)
        self._output, self._prefix, self._image_format = output, prefix, image_format

    def expand(self, keyed):
        return (
            keyed
            | "GroupByShard" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(_WriteShard(self._output, self._prefix, self._image_format))
        )


class _WriteShard(beam.DoFn):
    def __init__(self, output: str, prefix: str, image_format: str):
        self._output, self._prefix, self._image_format = output, prefix, image_format

    def process(self, shard: tuple[int, list]):
        index, elements = shard[0], list(shard[1])
        samples = sorted((e for e in elements if isinstance(e, Sample)), key=lambda s: s.key)
        failures = [e for e in elements if isinstance(e, FailedInput)]
        if len(samples) + len(failures) != len(elements):
            unknown = {type(e).__name__ for e in elements} - {"Sample", "FailedInput"}
            raise TypeError(f"WriteShards takes Sample or FailedInput elements, got {unknown}")
        write_shard(self._output, self._prefix, index, samples, failures, self._image_format)
        yield index
