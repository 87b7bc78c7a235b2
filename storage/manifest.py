"""The manifest: Parquet, one row per input, written atomically.

Each shard writes its own rows as a part beside its stats file
(``storage.shards``); ``manifest.parquet`` is assembled from the parts of every
finished shard of the output (``transforms.assemble_manifest``).

Columns: ``key``, ``source`` (the input's path), ``status`` (``"written"``,
``"failed"`` or ``"filtered"``: rendered, then dropped by the quality filter),
``shard`` (the tar's file name for written rows, else null), ``error_code`` (an
``InputError.code``; ``filtered`` for filtered rows) and ``error`` (the message
naming the file and the reason) for the others, else null. A part's rows are sorted by
key, and the assembled manifest holds the parts in shard order. Keys are unique
(each input is in one shard), so inputs = written + failed + filtered holds row by row.
"""

from __future__ import annotations

import io
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from storage.fileio import read_bytes, write_atomically

MANIFEST_FILE = "manifest.parquet"  # the assembled manifest, under the output
STATUSES = ("written", "failed", "filtered")
MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("shard", pa.string()),
        pa.field("error_code", pa.string()),
        pa.field("error", pa.string()),
    ]
)


def write_manifest(path: str, rows: Iterable[dict]) -> int:
    """Validate and write the rows (dicts with the schema's columns) to ``path`` sorted by key;
    return the count.

    ``ValueError`` for a duplicate key or an unknown status: both would break
    inputs = written + failed + filtered.
    """
    ordered = sorted(rows, key=lambda row: row["key"])
    for previous, current in zip(ordered, ordered[1:]):
        if previous["key"] == current["key"]:
            raise ValueError(f"manifest key {current['key']!r} appears twice")
    for row in ordered:
        if row["status"] not in STATUSES:
            raise ValueError(f"manifest row {row['key']!r} has status {row['status']!r}")
    table = pa.Table.from_pylist(ordered, schema=MANIFEST_SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    write_atomically(path, buffer.getvalue(), "application/vnd.apache.parquet")
    return len(ordered)


def read_manifest(path: str) -> pa.Table:
    return pq.read_table(io.BytesIO(read_bytes(path)))
