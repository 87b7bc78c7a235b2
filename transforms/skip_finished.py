"""Resume: drop the inputs of shards that a previous run finished, before any model work.

A shard counts as finished when its stats file (the commit marker, see
``transforms.shards``) exists beside its tar, records the image format this run
asks for, accounts for exactly the input keys this run assigns to the shard,
and has no target whose model call failed (``synthesis_failed``: possibly
transient, e.g. out of GPU memory, so such a shard is tried again). The key
check catches a changed input set (new label maps shift the key ranks, hence
the shards), so a stale shard is rendered again rather than reused. Other
options (steps, model, seed) are not recorded in the stats: resuming assumes
the same options, as reusing ``--output`` implies.

The manifest rows of a finished shard come from its stats file, so the new
manifest still holds one row per input.

Only shards finished before this run count: the launcher lists the stats files
when the graph is built, and the check on the workers looks at those shards
alone. A runner that recomputes a lost step (Dask, after a worker died) may run
the check again after this run wrote some shards; those must not turn into
"finished earlier" rows beside the rows of their writing (a manifest key twice).
"""

from __future__ import annotations

import typing

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.shards import (
    completed_shards,
    manifest_rows,
    read_shard_stats,
    shard_is_complete,
    shard_keys,
)
from transforms.synthesis_handler import METRICS_NAMESPACE, SYNTHESIS_FAILED


class SkipFinishedResult(typing.NamedTuple):
    pending: beam.PCollection  # of (shard, element): inputs of shards still to write
    rows: beam.PCollection  # of manifest-row dicts of the finished shards


class SkipFinishedShards(beam.PTransform):
    """``PCollection[(shard, element with .key)] -> SkipFinishedResult``."""

    def __init__(self, output: str, prefix: str, image_format: str):
        super().__init__()
        self._output, self._prefix, self._image_format = output, prefix, image_format

    def expand(self, keyed):
        before = frozenset(completed_shards(self._output, self._prefix))  # see the docstring
        finished = (
            keyed
            | "ShardKey" >> beam.MapTuple(lambda shard, element: (shard, element.key))
            | "KeysByShard" >> beam.GroupByKey()
            | "Finished"
            >> beam.ParDo(_FinishedStats(self._output, self._prefix, self._image_format, before))
        )
        rows = finished | "RowsFromStats" >> beam.FlatMapTuple(
            lambda _, stats: manifest_rows(stats)
        )
        pending = keyed | "DropFinished" >> beam.Filter(
            lambda item, done: item[0] not in done,
            done=beam.pvalue.AsDict(finished | "Done" >> beam.MapTuple(lambda s, _: (s, True))),
        )
        return SkipFinishedResult(pending=pending, rows=rows)


class _FinishedStats(beam.DoFn):
    """``(shard, keys) -> (shard, stats)`` for each shard finished with exactly these keys."""

    def __init__(self, output: str, prefix: str, image_format: str, before: frozenset):
        self._output, self._prefix, self._image_format = output, prefix, image_format
        self._before = before  # shards finished when the run was launched
        self._skipped = Metrics.counter(METRICS_NAMESPACE, "skipped_shards")

    def process(self, shard_and_keys):
        shard, keys = shard_and_keys
        if shard not in self._before or not shard_is_complete(self._output, self._prefix, shard):
            return
        stats = read_shard_stats(self._output, self._prefix, shard)
        same_inputs = shard_keys(stats) == set(keys)
        same_format = stats.get("image_format") == self._image_format
        retry = any(row["error_code"] == SYNTHESIS_FAILED for row in stats["failed"])
        if same_inputs and same_format and not retry:
            self._skipped.inc()
            yield shard, stats
