"""Resume: what a rerun finds in its output, and dropping the inputs of shards it reuses.

``survey_output`` runs on the launcher, before the graph is built. A shard is
finished when its stats file (the commit marker, ``storage.shards``) exists
beside its tar. Every finished shard must carry this run's render fingerprint
(``storage.fingerprint``), else ``FingerprintMismatchError`` stops the run
before any model work, naming the fields that differ. A finished shard is
reused unless it holds a target whose model call failed (``synthesis_failed``:
possibly transient, e.g. out of GPU memory): such a shard is rendered again,
with the same keys. With ``overwrite``, the output's shards, their parts and the
manifest are deleted first, so a run killed mid-way leaves only shards of the
new fingerprint (never a mix) and a rerun resumes it.

Keys of finished shards keep their shard (``transforms.assign_shards``); new
inputs go to new shards. A key that was in a finished shard and is no longer an
input is not rendered or deleted: its shard stays as it is, and its manifest row
stays (the manifest describes the output: this run's inputs, plus earlier
inputs still in its finished shards). Pass ``--overwrite`` to drop them. If its
shard is rendered again (it had ``synthesis_failed`` rows), the removed key is
no longer in it.

Reading the stats costs one small JSON file per finished shard on the launcher
(about 100 bytes per input), read 16 at a time.

The set of reusable shards is fixed on the launcher, before any worker starts: a
runner that recomputes a lost step (Dask, after a worker died) must not see this
run's own shards as "finished earlier" (their manifest rows would appear twice).
"""

from __future__ import annotations

import concurrent.futures
import logging
import typing

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from amadapter.io.shard_format import PART_SUFFIX, STATS_SUFFIX, shard_name
from storage.fileio import delete, exists, list_files
from storage.fingerprint import FingerprintMismatchError, fingerprint_differences
from storage.manifest import MANIFEST_FILE
from storage.shards import completed_shards, read_stats_file, stats_path
from transforms.job_metrics import METRICS_NAMESPACE
from transforms.synthesis_failures import SYNTHESIS_FAILED

LOG = logging.getLogger("augment")
_READERS = 16


class OutputState(typing.NamedTuple):
    finished: dict[int, str]  # shard index -> stats path, every finished shard
    reusable: frozenset[int]  # finished shards this run keeps as they are


def survey_output(
    output: str, prefix: str, fingerprint: dict, overwrite: bool = False
) -> OutputState:
    """The output's finished shards, checked against ``fingerprint``; see the module docstring."""
    if overwrite:
        discard_output(output, prefix)
        return OutputState({}, frozenset())
    finished = {i: stats_path(output, prefix, i) for i in completed_shards(output, prefix)}
    with concurrent.futures.ThreadPoolExecutor(_READERS) as pool:
        stats = dict(zip(finished, pool.map(read_stats_file, finished.values())))
    reusable = set()
    for index, shard in sorted(stats.items()):
        differences = fingerprint_differences(shard.get("fingerprint"), fingerprint)
        if differences:
            raise FingerprintMismatchError(output, shard_name(prefix, index), differences)
        if not any(row["error_code"] == SYNTHESIS_FAILED for row in shard["failed"]):
            reusable.add(index)
    return OutputState(finished, frozenset(reusable))


def discard_output(output: str, prefix: str) -> None:
    """Delete the shards (stats first: they are the commit markers), parts and the manifest."""
    stats = list_files(FileSystems.join(output, f"{prefix}-*{STATS_SUFFIX}"))
    others = list_files(FileSystems.join(output, f"{prefix}-*.tar")) + list_files(
        FileSystems.join(output, f"{prefix}-*{PART_SUFFIX}")
    )
    for path in stats + others:
        delete(path)
    manifest = FileSystems.join(output, MANIFEST_FILE)
    if exists(manifest):
        delete(manifest)
    LOG.info("--overwrite: removed %d shards from %s", len(stats), output)


class SkipFinishedResult(typing.NamedTuple):
    pending: beam.PCollection  # of (shard, element): inputs of shards still to write
    reused: beam.PCollection  # of shard indices kept as they are


class SkipFinishedShards(beam.PTransform):
    """``PCollection[(shard, element)] -> SkipFinishedResult``; ``reusable`` from
    ``survey_output``. Counts the reused shards (metric ``skipped_shards``)."""

    def __init__(self, reusable: frozenset[int]):
        super().__init__()
        self._reusable = frozenset(reusable)

    def expand(self, keyed):
        pending = keyed | "DropFinished" >> beam.Filter(
            lambda item, done: item[0] not in done, self._reusable
        )
        skipped = Metrics.counter(METRICS_NAMESPACE, "skipped_shards")
        reused = (
            keyed.pipeline
            | "Reused" >> beam.Create(sorted(self._reusable))
            | "CountReused" >> beam.Map(_count, skipped)
        )
        return SkipFinishedResult(pending=pending, reused=reused)


def _count(element, counter):
    counter.inc()
    return element
