"""Write each rendered shard as soon as it arrives: ``ShardResult -> shard index``.

The input is already one element per shard (no grouping shuffle), so this step
fuses with the synthesis step before it and a shard is committed right after it
is rendered. The writing
itself is ``storage.shards.write_shard`` (atomic tar, manifest part, then the
stats file with the run's render fingerprint).
"""

from __future__ import annotations

import logging

import apache_beam as beam

from storage.shards import write_shard
from transforms.synthesis_request import ShardResult

LOG = logging.getLogger("augment")


class WriteShardResults(beam.DoFn):
    def __init__(self, output: str, prefix: str, image_format: str, fingerprint: dict | None):
        self._output, self._prefix, self._image_format = output, prefix, image_format
        self._fingerprint = fingerprint

    def process(self, result: ShardResult):
        samples = sorted(result.samples, key=lambda s: s.key)
        stats = write_shard(
            self._output,
            self._prefix,
            result.shard,
            samples,
            result.failures,
            self._image_format,
            self._fingerprint,
        )
        LOG.info(
            "shard %d written: %d samples, %d failed%s -> %s",
            result.shard,
            stats["count"],
            len(stats["failed"]),
            f", {len(stats['filtered'])} filtered" if stats["filtered"] else "",
            stats["tar"],
        )
        yield result.shard
