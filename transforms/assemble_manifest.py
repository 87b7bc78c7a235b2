"""Assemble ``manifest.parquet`` from the manifest parts of the output's finished shards.

``AssembleManifest`` runs once every shard of the run is written (it waits on one
element per shard, counted, never gathered) and streams the parts, one at a
time, into the manifest: memory holds one part, not the run's rows. The parts
are those of every finished shard under the output, this run's and earlier
ones', so the manifest covers the whole output (a key removed from the input
keeps its finished shard and its row: ``transforms.skip_finished``).
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from storage.fileio import atomic_writer, open_file
from storage.manifest import MANIFEST_SCHEMA, STATUSES
from storage.shards import completed_shards, part_path
from transforms.job_metrics import METRICS_NAMESPACE


def assemble_manifest(output: str, prefix: str, path: str) -> int:
    """Write ``path`` from the parts of the finished shards under ``output``; return the rows."""
    counters = {status: Metrics.counter(METRICS_NAMESPACE, status) for status in STATUSES}
    rows = 0
    with atomic_writer(path, "application/vnd.apache.parquet") as stream:
        with pq.ParquetWriter(stream, MANIFEST_SCHEMA) as writer:
            for index in completed_shards(output, prefix):
                with open_file(part_path(output, prefix, index)) as part:
                    table = pq.read_table(part).cast(MANIFEST_SCHEMA)
                writer.write_table(table)
                for status, counter in counters.items():
                    counter.inc(pc.sum(pc.equal(table.column("status"), status)).as_py() or 0)
                rows += table.num_rows
    return rows


class AssembleManifest(beam.PTransform):
    """``PCollection[any] -> PCollection[str]``: once the input is complete (one element per
    shard written or reused), assembles the manifest and emits its path."""

    def __init__(self, output: str, prefix: str, path: str):
        super().__init__()
        self._output, self._prefix, self._path = output, prefix, path

    def expand(self, shards_done):
        return (
            shards_done
            | "CountShards" >> beam.combiners.Count.Globally()
            | "Assemble" >> beam.Map(_assemble, self._output, self._prefix, self._path)
        )


def _assemble(_shards: int, output: str, prefix: str, path: str) -> str:
    assemble_manifest(output, prefix, path)
    return path
