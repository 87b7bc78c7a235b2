"""The exemplar index on disk: Parquet parts listed by a small JSON file.

    INDEX/index.json          format, version, sizes, the list of parts with row counts, and
                              ``pool_labels``: None, or who predicted the entries' label maps
    INDEX/part-<run>-<n>.parquet

Each part holds one row per pool entry:

    key, frame, label_path, photo_path, label_format, dataset   strings (photo_path nullable)
    small_map     fixed_size_list<uint8>[32*64]   descriptor.downsample_nearest
    class_areas   fixed_size_list<uint16>[19]     score.class_areas

Everything the search needs besides is derived from the small maps when the
index is opened (``mapped.py``), so a change of the search's descriptors needs no
rebuild. (Version 1 also stored an 8x16-cell descriptor, 2,432 bytes per entry:
more than half the index.)

``index.json`` is the commit point: it is replaced atomically after the parts it
names are complete, and readers read only the parts it names. A build or update
killed mid-way therefore leaves the previous index intact (and at worst an
unlisted part file, removed by the next build). Paths go through
``pyarrow.fs``, so an index may live on local disk, ``gs://`` or ``s3://``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from amadapter.io.labels import NUM_CLASSES
from amadapter.retrieval.descriptor import MAP_SHAPE

FORMAT = "amadapter-exemplar-index"
VERSION = 2
META_FILE = "index.json"
MAP_SIZE = MAP_SHAPE[0] * MAP_SHAPE[1]
ROWS_PER_GROUP = 4096  # Parquet row group: the unit of streaming on write and on load
ROWS_PER_PART = 16 * ROWS_PER_GROUP

SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("frame", pa.string()),
        ("label_path", pa.string()),
        ("photo_path", pa.string()),
        ("label_format", pa.string()),
        ("dataset", pa.string()),
        ("small_map", pa.list_(pa.uint8(), MAP_SIZE)),
        ("class_areas", pa.list_(pa.uint16(), NUM_CLASSES)),
    ]
)
TEXT_COLUMNS = ("key", "frame", "label_path", "photo_path", "label_format", "dataset")


class IndexFormatError(ValueError):
    """The path holds no index, or one written with other sizes or another format version."""


@dataclasses.dataclass
class RowBatch:
    """Rows to write, column by column; arrays have one row per entry."""

    text: dict[str, list]  # TEXT_COLUMNS -> list of str (photo_path may hold None)
    small_maps: np.ndarray  # (n, *MAP_SHAPE) uint8
    class_areas: np.ndarray  # (n, NUM_CLASSES) integer

    def __len__(self) -> int:
        return len(self.small_maps)

    def to_table(self) -> pa.Table:
        n = len(self)
        arrays = [pa.array(self.text[name], pa.string()) for name in TEXT_COLUMNS]
        arrays += [
            _fixed_list(self.small_maps.reshape(n, -1), np.uint8),
            _fixed_list(self.class_areas, np.uint16),
        ]
        return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _fixed_list(values: np.ndarray, dtype: type) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(values, dtype=dtype).ravel())
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


class IndexStore:
    """One index location: its file system, its ``index.json``, and its parts."""

    def __init__(self, path: str):
        self.path = path
        if "://" in path:
            self._fs, self._root = pafs.FileSystem.from_uri(path)
        else:
            self._fs, self._root = pafs.LocalFileSystem(), os.path.abspath(path)
        self._root = self._root.rstrip("/")

    # ---------------------------------------------------------------- meta

    def exists(self) -> bool:
        return self._fs.get_file_info(self._file(META_FILE)).type == pafs.FileType.File

    def read_meta(self) -> dict:
        if not self.exists():
            raise IndexFormatError(f"no exemplar index at {self.path} (missing {META_FILE})")
        with self._fs.open_input_stream(self._file(META_FILE)) as stream:
            meta = json.loads(stream.read())
        expected = _empty_meta()
        for field in ("format", "version", "map_shape"):
            if meta.get(field) != expected[field]:
                raise IndexFormatError(
                    f"index {self.path} has {field}={meta.get(field)!r} but this code expects "
                    f"{expected[field]!r}; rebuild it (python -m jobs.build_index --rebuild)"
                )
        return meta

    def pool_labels(self) -> dict | None:
        """Who predicted the entries' label maps (``storage.unlabelled_pool``); None when they
        are the pool's own (and for an index written before the field existed)."""
        return self.read_meta().get("pool_labels")

    def check_pool_labels(self, pool_labels: dict | None) -> None:
        """``IndexFormatError`` when an existing index's labels come from elsewhere than
        ``pool_labels``: an update must not mix two labellings in one index."""
        if self.exists() and self.pool_labels() != pool_labels:
            raise IndexFormatError(
                f"index {self.path} holds label maps from {_labels_origin(self.pool_labels())}, "
                f"this build's come from {_labels_origin(pool_labels)}; rebuild it "
                "(python -m jobs.build_index --rebuild)"
            )

    def commit(self, new_parts: list[dict], replace: bool, pool_labels: dict | None = None) -> dict:
        """List ``new_parts`` in ``index.json`` (after the current parts unless ``replace``)
        in one atomic replace; then remove part files no longer listed. Returns the meta."""
        meta = _empty_meta() if replace or not self.exists() else self.read_meta()
        meta["pool_labels"] = pool_labels
        meta["parts"] = meta["parts"] + new_parts
        meta["rows"] = sum(part["rows"] for part in meta["parts"])
        self._fs.create_dir(self._root, recursive=True)
        temp = self._file(f"{META_FILE}.tmp-{uuid.uuid4().hex[:12]}")
        with self._fs.open_output_stream(temp) as stream:
            stream.write(json.dumps(meta, indent=1).encode())
        self._fs.move(temp, self._file(META_FILE))
        self._remove_unlisted({part["file"] for part in meta["parts"]})
        return meta

    def _remove_unlisted(self, listed: set[str]) -> None:
        selector = pafs.FileSelector(self._root, allow_not_found=True)
        for info in self._fs.get_file_info(selector):
            name = info.base_name
            if name.startswith("part-") and name not in listed:
                self._fs.delete_file(info.path)

    # ---------------------------------------------------------------- parts

    def part_writer(self, name: str | None = None) -> "PartWriter":
        """A writer of parts named ``part-NAME-<n>.parquet`` (NAME: a fresh random one by
        default; a Beam build names them by run and bucket)."""
        self._fs.create_dir(self._root, recursive=True)
        return PartWriter(self, f"part-{name or uuid.uuid4().hex[:12]}")

    def open_part(self, name: str):
        return pq.ParquetFile(self._fs.open_input_file(self._file(name)))

    def read_column(self, column: str) -> Iterator[pa.ChunkedArray]:
        """One column of every listed part, part by part (e.g. the keys for an update)."""
        for part in self.read_meta()["parts"]:
            yield self.open_part(part["file"]).read(columns=[column]).column(0)

    def _file(self, name: str) -> str:
        return f"{self._root}/{name}"


class PartWriter:
    """Writes row batches into parts of at most ``ROWS_PER_PART`` rows; ``close()`` returns
    the part list for ``IndexStore.commit``."""

    def __init__(self, store: IndexStore, prefix: str):
        self._store, self._prefix = store, prefix
        self._parts: list[dict] = []
        self._sink = None
        self._writer: pq.ParquetWriter | None = None

    def write(self, batch: RowBatch) -> None:
        table = batch.to_table()
        while len(table):
            if self._writer is None or self._parts[-1]["rows"] >= ROWS_PER_PART:
                self._close_current()
                self._open_next()
            room = ROWS_PER_PART - self._parts[-1]["rows"]
            head, table = table.slice(0, room), table.slice(room)
            self._writer.write_table(head, row_group_size=ROWS_PER_GROUP)
            self._parts[-1]["rows"] += len(head)

    def close(self) -> list[dict]:
        self._close_current()
        return self._parts

    def _open_next(self) -> None:
        name = f"{self._prefix}-{len(self._parts):05d}.parquet"
        self._sink = self._store._fs.open_output_stream(self._store._file(name))
        self._writer = pq.ParquetWriter(self._sink, SCHEMA, compression="zstd")
        self._parts.append({"file": name, "rows": 0})

    def _close_current(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = self._sink = None


def _labels_origin(pool_labels: dict | None) -> str:
    if pool_labels is None:
        return "the pool's own label maps"
    return f"segmenter {pool_labels['predicted_by']} (sha256 {pool_labels['segmenter_sha256'][:12]})"


def _empty_meta() -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "map_shape": list(MAP_SHAPE),
        "rows": 0,
        "parts": [],
    }
