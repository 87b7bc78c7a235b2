"""The Beam side of building an exemplar index: pool entries -> Parquet parts of the index.

    buckets = index_buckets(len(sources))
    written = sources | WriteIndexParts(index_path, work_dir, run="0123abcd", buckets=buckets)
    # then the launcher reads work_dir and commits (pipeline.index_graph)

Each entry is summarised where it is read (``amadapter.retrieval.build.summarise``:
its 2 kB small map, or the reason it cannot serve) and sent to one of ``buckets``
groups by a hash of its key. A group is written, sorted by key, as the parts
``part-RUN-BUCKET-<n>.parquet`` in the format of the single-process build, and
what it wrote (its parts, its skipped entries with their reasons) as
``WORK/bucket-BUCKET.json``. So the index's rows and parts depend only on the
entries, not on the runner, the workers or the order the entries arrive in; a
group written again after a worker failure writes the same files. Nothing is in
the index until the launcher lists the parts in ``index.json``
(``amadapter.retrieval.store.IndexStore.commit``).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Iterable

import apache_beam as beam

from amadapter.io.errors import InputError
from amadapter.retrieval.build import row_batch, summarise
from amadapter.retrieval.store import ROWS_PER_GROUP, IndexStore
from storage.exemplar_pool import pool_labels
from storage.fileio import write_atomically
from storage.records import LabelSource

# Entries per bucket: a worker holds one bucket's small maps (~2.3 kB an entry, ~40 MB).
ROWS_PER_BUCKET = 4 * ROWS_PER_GROUP


def index_buckets(entries: int) -> int:
    return max(1, math.ceil(entries / ROWS_PER_BUCKET))


def bucket_of(key: str, buckets: int) -> int:
    """A hash of the key that every process computes alike (Python's ``hash`` of a str
    is salted per process)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % buckets


def bucket_file(work_dir: str, bucket: int) -> str:
    return f"{work_dir.rstrip('/')}/bucket-{bucket:05d}.json"


class WriteIndexParts(beam.PTransform):
    """``PCollection[LabelSource] -> PCollection[str]`` (the bucket files written); see the
    module docstring. ``read_label`` reads an entry's train IDs (default: the pool's rule,
    photo required)."""

    def __init__(self, index_path: str, work_dir: str, run: str, buckets: int,
                 read_label=pool_labels):  # fmt: skip
        super().__init__()
        self._index_path, self._work_dir, self._run = index_path, work_dir, run
        self._buckets, self._read_label = buckets, read_label

    def expand(self, sources):
        buckets, read_label = self._buckets, self._read_label
        return (
            sources
            | "Summarise" >> beam.Map(lambda s: (bucket_of(s.key, buckets), _summary(read_label, s)))
            | "GroupByBucket" >> beam.GroupByKey()
            | "WriteBucket" >> beam.MapTuple(self._write_bucket)
        )

    def _write_bucket(self, bucket: int, entries: Iterable[tuple]) -> str:
        rows, skipped = [], []
        for source, result in sorted(entries, key=lambda entry: entry[0].key):
            if isinstance(result, dict):
                skipped.append(result)
            else:
                rows.append((source, result))
        writer = IndexStore(self._index_path).part_writer(name=f"{self._run}-{bucket:05d}")
        for start in range(0, len(rows), ROWS_PER_GROUP):
            writer.write(row_batch(rows[start : start + ROWS_PER_GROUP]))
        path = bucket_file(self._work_dir, bucket)
        record = {"parts": writer.close(), "skipped": skipped}
        write_atomically(path, json.dumps(record).encode(), "application/json")
        return path


def _summary(read_label, source: LabelSource) -> tuple[LabelSource, object]:
    """(source, small map), or (source, the skip record): an ``InputError`` travels as its
    parts (``amadapter.io.errors.input_error`` rebuilds it), since it does not unpickle."""
    result = summarise(read_label, source)
    if isinstance(result, InputError):
        result = {"key": source.key, "code": result.code, "path": result.path,
                  "reason": result.reason}  # fmt: skip
    return source, result
