"""The exemplar index as memory-mapped files on local disk, derived once per machine.

``ExemplarIndex.load`` reads the Parquet index (``store.py``, local or remote) once,
row group by row group, and writes here everything a query reads:

    CACHE/<hash of the index path>/<hash of its index.json>/
        text.arrow      key, label_path, photo_path, label_format, dataset (Arrow IPC)
        small_maps.u8   (N, 32*64)            the exact re-rank
        counts.u8       (N, 19, 32)           per-cell class counts: the tight bounds
        coarse.u8       (N, 19, 8)            halved 2x4-cell counts: the loose bounds
        areas.u16       (N, 19)               class areas
        scan.i8         chunks of (SCAN_DIM, SCAN_CHUNK)  the coarse scan's pool side
        sample.i8       (SCAN_DIM, ceil(N / SAMPLE_STRIDE))  every SAMPLE_STRIDE-th row
        frames.i64      (2, N): sorted frame hashes, then their rows
        meta.json       written last: the folder is complete

then maps the files. Nothing is read into process memory: a query touches the
pages it needs, the kernel keeps them in its page cache, shared by every process
of the machine that opens the same index (the SDK processes of a Beam worker),
and reclaims them under pressure. The scan reads all its chunks, the bounds the
counts of thousands of candidates per target, so those files end up resident in
a process that queries (about 1 kB per entry). The small maps (2 kB per entry)
are not mapped but read, a few dozen per target, with ``pread``
(``read_small_maps``): the kernel maps page cache in large folios, so a mapped
file read at scattered rows becomes resident almost whole, ``MADV_RANDOM`` or not
(bench/RESULTS.md measures it at 1,000,000 entries).

``CACHE`` is ``$AMADAPTER_INDEX_CACHE``, else ``$XDG_CACHE_HOME/amadapter/index``
(``~/.cache/amadapter/index``). A changed index (an update, a rebuild) has another
``index.json`` and so another folder; building it removes the older folders of the
same index (processes that still map them keep their mappings). One process of a
machine builds a folder while the others wait on a lock, then map it.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import mmap
import os
import shutil
import typing
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa

from amadapter.io.labels import NUM_CLASSES
from amadapter.retrieval.candidates import SAMPLE_STRIDE, SCAN_CHUNK, SCAN_DIM, pool_side
from amadapter.retrieval.descriptor import (
    BOUND_CELLS,
    COARSE_CELLS,
    MAP_SHAPE,
    cell_counts,
    coarse_counts,
    coarse_descriptors,
)
from amadapter.retrieval.frames import frame_hash
from amadapter.retrieval.store import MAP_SIZE, TEXT_COLUMNS, IndexStore

CACHE_ENV = "AMADAPTER_INDEX_CACHE"
LAYOUT_VERSION = 1  # of the files above: a change maps to new folders
MATCH_COLUMNS = tuple(name for name in TEXT_COLUMNS if name != "frame")  # ExemplarMatch's


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "amadapter" / "index"


@dataclasses.dataclass
class MappedIndex:
    """An index's arrays, each a read-only view of a mapped file, row i of entry i."""

    size: int
    text: pa.Table  # MATCH_COLUMNS
    counts: np.ndarray  # (N, NUM_CLASSES, BOUND_CELLS) uint8
    coarse_counts: np.ndarray  # (N, NUM_CLASSES, COARSE_CELLS) uint8
    areas: np.ndarray  # (N, NUM_CLASSES) uint16
    scan_chunks: list[np.ndarray]  # (SCAN_DIM, width) int8 each, SCAN_CHUNK rows apart
    scan_sample: np.ndarray  # (SCAN_DIM, ceil(N / SAMPLE_STRIDE)) int8
    frame_hashes: np.ndarray  # (N,) int64, sorted
    frame_rows: np.ndarray  # (N,) int64: the row of each sorted hash
    small_maps_file: typing.BinaryIO  # small_maps.u8, open (closed with the object)

    def read_small_maps(self, rows: np.ndarray) -> np.ndarray:
        """The small maps of ``rows``, (len(rows), *MAP_SHAPE) uint8, read from the file."""
        return np.stack([self.read_small_map(int(row)) for row in rows])

    def read_small_map(self, row: int) -> np.ndarray:
        data = os.pread(self.small_maps_file.fileno(), MAP_SIZE, row * MAP_SIZE)
        return np.frombuffer(data, np.uint8).reshape(MAP_SHAPE)


def open_mapped(store: IndexStore) -> MappedIndex:
    """The mapped files of the index at ``store``, built first if this machine lacks them."""
    meta = store.read_meta()
    index_dir = cache_root() / _digest(os.path.abspath(store.path) if "://" not in store.path
                                       else store.path)  # fmt: skip
    folder = index_dir / _digest(json.dumps([meta, LAYOUT_VERSION], sort_keys=True))
    if not (folder / "meta.json").exists():
        index_dir.mkdir(parents=True, exist_ok=True)
        with open(index_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if not (folder / "meta.json").exists():
                _write(store, meta, folder)
                for other in index_dir.iterdir():  # older versions, leftovers of killed runs
                    if other.is_dir() and other != folder:
                        shutil.rmtree(other, ignore_errors=True)
    return _open(folder)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write(store: IndexStore, meta: dict, folder: Path) -> None:
    """Stream the index's row groups into the files of the module docstring."""
    temp = folder.with_name(f"{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
    temp.mkdir()
    n = meta["rows"]
    frames = np.empty(n, np.int64)
    sample, scan_rows = [], []  # pending rows of the sample and of the current scan chunk
    names = ("small_maps.u8", "counts.u8", "coarse.u8", "areas.u16", "scan.i8")
    files = {name: open(temp / name, "wb") for name in names}
    text_schema = pa.schema([pa.field(name, pa.string()) for name in MATCH_COLUMNS])
    with pa.OSFile(str(temp / "text.arrow"), "wb") as sink, pa.ipc.new_file(
        sink, text_schema
    ) as text:
        row = 0
        for part in meta["parts"]:
            parquet = store.open_part(part["file"])
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group)
                m = table.num_rows
                small = _fixed_lists(table.column("small_map"), MAP_SIZE)
                areas = _fixed_lists(table.column("class_areas"), NUM_CLASSES)
                counts = cell_counts(small.reshape(m, *MAP_SHAPE))
                scan = pool_side(coarse_descriptors(counts), areas)
                files["small_maps.u8"].write(small.tobytes())
                files["counts.u8"].write(counts.tobytes())
                files["coarse.u8"].write(coarse_counts(counts).tobytes())
                files["areas.u16"].write(areas.astype(np.uint16).tobytes())
                text.write_table(table.select(list(MATCH_COLUMNS)).cast(text_schema))
                frames[row : row + m] = [frame_hash(f) for f in table.column("frame").to_pylist()]
                sample.append(scan[(-row) % SAMPLE_STRIDE :: SAMPLE_STRIDE])
                scan_rows.append(scan)
                row += m
                while sum(len(r) for r in scan_rows) >= SCAN_CHUNK:
                    scan_rows = _write_chunk(files["scan.i8"], scan_rows, SCAN_CHUNK)
        if row != n:
            raise ValueError(f"index {store.path}: index.json lists {n} rows but its parts hold {row}")
    if scan_rows:
        _write_chunk(files["scan.i8"], scan_rows, sum(len(r) for r in scan_rows))
    for file in files.values():
        file.close()
    np.ascontiguousarray(np.concatenate(sample).T).tofile(temp / "sample.i8")
    order = np.argsort(frames, kind="stable")
    np.stack([frames[order], order]).tofile(temp / "frames.i64")
    (temp / "meta.json").write_text(json.dumps({"rows": n, "index": meta}))
    temp.rename(folder)


def _write_chunk(file, pending: list[np.ndarray], width: int) -> list[np.ndarray]:
    """Write the first ``width`` pending scan rows as one (SCAN_DIM, width) chunk; return
    the rows left."""
    rows = np.concatenate(pending)
    file.write(np.ascontiguousarray(rows[:width].T).tobytes())
    return [rows[width:]] if len(rows) > width else []


def _open(folder: Path) -> MappedIndex:
    n = json.loads((folder / "meta.json").read_text())["rows"]
    counts, _ = _map(folder / "counts.u8", np.uint8, (n, NUM_CLASSES, BOUND_CELLS))
    scan, _ = _map(folder / "scan.i8", np.int8, (-1,), writable=True)
    chunks = [
        scan[SCAN_DIM * start : SCAN_DIM * min(start + SCAN_CHUNK, n)].reshape(SCAN_DIM, -1)
        for start in range(0, n, SCAN_CHUNK)
    ]
    sample, _ = _map(folder / "sample.i8", np.int8, (SCAN_DIM, -1), writable=True)
    frames, _ = _map(folder / "frames.i64", np.int64, (2, n))
    text = pa.ipc.open_file(pa.memory_map(str(folder / "text.arrow"))).read_all()
    return MappedIndex(
        size=n,
        text=text,
        counts=counts,
        coarse_counts=_map(folder / "coarse.u8", np.uint8, (n, NUM_CLASSES, COARSE_CELLS))[0],
        areas=_map(folder / "areas.u16", np.uint16, (n, NUM_CLASSES))[0],
        scan_chunks=chunks,
        scan_sample=sample,
        frame_hashes=frames[0],
        frame_rows=frames[1],
        small_maps_file=open(folder / "small_maps.u8", "rb", buffering=0),
    )


def _map(path: Path, dtype, shape: tuple, writable: bool = False) -> tuple[np.ndarray, mmap.mmap]:
    """A file as an array without reading it. ``writable``: a private copy-on-write map
    (torch wants writable arrays; nothing writes to them, so no page is copied)."""
    with open(path, "rb") as file:
        mapped = mmap.mmap(
            file.fileno(), 0, access=mmap.ACCESS_COPY if writable else mmap.ACCESS_READ
        )
    return np.frombuffer(mapped, dtype).reshape(shape), mapped


def _fixed_lists(column: pa.ChunkedArray, width: int) -> np.ndarray:
    values = [chunk.flatten().to_numpy(zero_copy_only=False) for chunk in column.chunks]
    return np.concatenate(values).reshape(-1, width)
