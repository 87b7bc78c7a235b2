"""Beam transforms that place samples in shards and write them (rules in ``transforms.shards``).

Usage::

    keyed = (samples_and_failures          # PCollection of Sample | FailedInput
             | AssignShards(shard_size))   # -> (shard_index, element)
    rows = keyed | WriteShards(output, prefix, image_format="jpg")
    rows | WriteManifest(FileSystems.join(output, "manifest.parquet"))

``AssignShards`` accepts any element with a ``key`` attribute (``LabelSource``,
``LabelRecord``, ``Sample``, ``FailedInput``), so a job can assign shards to its
inputs before synthesis and carry the index along.
"""

from __future__ import annotations

import apache_beam as beam

from amadapter.sample_format import image_member
from transforms.records import FailedInput, Sample
from transforms.shards import assign_shards, manifest_rows, shard_name, write_shard


class AssignShards(beam.PTransform):
    """``PCollection[element with .key] -> PCollection[(shard_index, element)]``.

    Every key must be unique. The sorted key list is built once and reaches the
    workers as a side input (a dict of key -> shard index, a few dozen bytes per key).
    """

    def __init__(self, shard_size: int):
        super().__init__()
        if shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {shard_size}")
        self._shard_size = shard_size

    def expand(self, elements):
        table = (
            elements
            | "Keys" >> beam.Map(lambda element: element.key)
            | "AllKeys" >> beam.combiners.ToList()
            | "Ranks" >> beam.Map(assign_shards, self._shard_size)
        )
        return elements | "Assign" >> beam.Map(
            lambda element, shards: (shards[element.key], element),
            shards=beam.pvalue.AsSingleton(table),
        )


class WriteShards(beam.PTransform):
    """``PCollection[(shard_index, Sample | FailedInput)] -> PCollection[dict]`` manifest rows.

    Groups by shard, writes each shard's tar and then its stats file (atomically,
    see ``transforms.shards.write_shard``) and emits one manifest row per input:
    written samples and failed inputs alike.
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
        stats = write_shard(
            self._output, self._prefix, index, samples, failures, self._image_format
        )
        yield from manifest_rows(stats)
