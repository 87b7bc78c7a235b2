"""Build or update an exemplar index from a stream of pool entries, in bounded memory.

Entries are read one by one (optionally by a few threads: PNG decoding releases
the GIL), summarised, and written in Parquet row groups of ``ROWS_PER_GROUP``;
one row group, the reading window and the set of keys seen (about 100 MB per
million entries) are in memory, whatever the pool size (1,000,000 entries:
bench/RESULTS.md). An entry whose label map or photo cannot be used (``read_label`` raises
an ``InputError``, or it has no photo) is skipped and reported with the reason.

An update (the default when the index exists) reads only the keys already
indexed and adds the entries whose key is new: no existing entry is read again.
"""

from __future__ import annotations

import collections
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np

from amadapter.io.errors import EmptyPoolError, InputError, MissingPhotoError
from amadapter.retrieval.descriptor import downsample_nearest
from amadapter.retrieval.frames import frame_id
from amadapter.retrieval.score import class_areas
from amadapter.retrieval.store import ROWS_PER_GROUP, IndexStore, RowBatch


class PoolSource(Protocol):
    """What the builder needs to know of a pool entry (``storage.records.LabelSource``
    has exactly these fields)."""

    key: str
    label_path: str
    photo_path: str | None
    label_format: str
    dataset: str


@dataclasses.dataclass
class BuildReport:
    path: str
    added: int = 0  # entries written by this run
    already_indexed: int = 0  # entries whose key the index held before (update)
    skipped: list[tuple[str, InputError]] = dataclasses.field(default_factory=list)  # (key, why)
    total: int = 0  # entries in the index after this run


def build_index(
    path: str,
    sources: Iterable[PoolSource],
    read_label: Callable[[PoolSource], np.ndarray],
    *,
    rebuild: bool = False,
    workers: int = 1,
    on_skip: Callable[[PoolSource, InputError], None] | None = None,
    pool_labels: dict | None = None,
) -> BuildReport:
    """Index ``sources`` at ``path`` (a folder or ``gs://``/``s3://`` prefix).

    ``read_label(source)`` returns the (H, W) uint8 train-ID map and raises
    ``InputError`` for a bad entry (e.g. ``transforms.read_label_maps.read_label_record``
    with ``photos="require"``, which also checks the photo exists and has the
    label map's size). ``rebuild`` starts a fresh index instead of adding to an
    existing one. ``on_skip`` is called for each skipped entry as it happens.
    ``pool_labels``: who predicts the label maps (``read_label`` does), recorded in the
    index; an update of an index labelled otherwise is an ``IndexFormatError``.
    Raises ``EmptyPoolError`` when the index would hold no entry.
    (``pipeline.index_graph`` is the same build as a Beam job.)
    """
    store = IndexStore(path)
    if not rebuild:
        store.check_pool_labels(pool_labels)
    report = BuildReport(path)
    writer = store.part_writer()
    pending: list[tuple[PoolSource, np.ndarray]] = []  # (source, small map)
    new = new_sources(sources, set() if rebuild else indexed_keys(store), report)
    for source, result in _read_in_order(new, read_label, workers):
        if isinstance(result, InputError):
            report.skipped.append((source.key, result))
            if on_skip is not None:
                on_skip(source, result)
            continue
        pending.append((source, result))
        if len(pending) == ROWS_PER_GROUP:
            writer.write(row_batch(pending))
            report.added += len(pending)
            pending = []
    if pending:
        writer.write(row_batch(pending))
        report.added += len(pending)
    return commit_build(store, writer.close(), report, rebuild, pool_labels)


def indexed_keys(store: IndexStore) -> set[str]:
    """The keys an existing index holds (none when there is no index yet)."""
    known: set[str] = set()
    if store.exists():
        for keys in store.read_column("key"):
            known.update(keys.to_pylist())
    return known


def new_sources(
    sources: Iterable[PoolSource], known: set[str], report: BuildReport
) -> Iterator[PoolSource]:
    """The sources whose key is not in ``known`` (nor seen before in ``sources``), counting
    the others in ``report.already_indexed``; ``known`` grows with the keys passed on."""
    for source in sources:
        if source.key in known:
            report.already_indexed += 1
        else:
            known.add(source.key)
            yield source


def commit_build(
    store: IndexStore, parts: list[dict], report: BuildReport, rebuild: bool,
    pool_labels: dict | None = None,
) -> BuildReport:
    """List the new ``parts`` in the index (replacing its old ones on ``rebuild``) and fill
    ``report.total``; raises ``EmptyPoolError`` (committing nothing) when it would be empty."""
    existing_rows = 0 if rebuild or not store.exists() else store.read_meta()["rows"]
    if existing_rows + report.added == 0:
        raise EmptyPoolError(
            store.path,
            f"no usable pool entry ({len(report.skipped)} skipped, each with its reason)",
        )
    report.total = store.commit(parts, replace=rebuild, pool_labels=pool_labels)["rows"]
    return report


def summarise(read_label: Callable, source: PoolSource) -> np.ndarray | InputError:
    """The entry's small map, or the reason it cannot be used."""
    if source.photo_path is None:
        return MissingPhotoError(source.label_path, "an exemplar needs a photo; none found")
    try:
        return downsample_nearest(read_label(source))
    except InputError as error:
        return error


def _read_in_order(
    sources: Iterable[PoolSource], read_label: Callable, workers: int
) -> Iterator[tuple[PoolSource, np.ndarray | InputError]]:
    """(source, small map or error) in input order; with ``workers`` > 1 a bounded window of
    reads runs ahead on threads."""
    if workers <= 1:
        for source in sources:
            yield source, summarise(read_label, source)
        return
    with ThreadPoolExecutor(workers) as pool:
        window: collections.deque = collections.deque()
        for source in sources:
            window.append((source, pool.submit(summarise, read_label, source)))
            if len(window) >= 4 * workers:
                done, future = window.popleft()
                yield done, future.result()
        while window:
            done, future = window.popleft()
            yield done, future.result()


def row_batch(pending: list[tuple[PoolSource, np.ndarray]]) -> RowBatch:
    """The rows of (source, small map) pairs, in their order."""
    sources = [source for source, _ in pending]
    small_maps = np.stack([small for _, small in pending])
    return RowBatch(
        text={
            "key": [s.key for s in sources],
            "frame": [frame_id(s.label_path) for s in sources],
            "label_path": [s.label_path for s in sources],
            "photo_path": [s.photo_path for s in sources],
            "label_format": [s.label_format for s in sources],
            "dataset": [s.dataset for s in sources],
        },
        small_maps=small_maps,
        class_areas=class_areas(small_maps),
    )
