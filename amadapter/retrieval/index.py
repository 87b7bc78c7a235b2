"""Load an exemplar index once, then query it in batches.

    index = ExemplarIndex.load("out/index")
    ranked = index.query(label_maps, k=4, target_paths=label_paths)  # best first, per map
    chosen = [draw(r, seed) for r, seed in zip(ranked, seeds)]        # top-1, or a seeded draw

A query runs in two stages: ``CandidateSearch`` estimates the exact score of
every pool entry from precomputed summaries and keeps the best ``candidates``
(default 256); ``score.layout_scores`` then scores those exactly and the best
``k`` are returned. The returned score is always the exact one (``score.py``).

Self-exclusion: ``target_paths`` names each map's file, and pool entries of the
same frame (``frames.frame_id``: for Cityscapes the same city_sequence_frame
stem) are never returned for it unless ``exclude_self=False``. It is a required
argument so that no caller forgets it; pass ``None`` for a map that comes from
no file.

Memory per pool entry: 2,048 bytes of small map + 2,432 of descriptor + 38 of
class areas + the key and paths (about 4.6 kB plus strings; 100k entries
about 0.5 GB).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Sequence

import numpy as np
import pyarrow as pa

from amadapter.io.errors import EmptyPoolError
from amadapter.io.labels import NUM_CLASSES
from amadapter.retrieval.candidates import CandidateSearch
from amadapter.retrieval.descriptor import (
    DESCRIPTOR_DIM,
    MAP_SHAPE,
    downsample_nearest,
    layout_descriptors,
)
from amadapter.retrieval.frames import frame_id
from amadapter.retrieval.score import class_areas, layout_scores
from amadapter.retrieval.store import MAP_SIZE, TEXT_COLUMNS, IndexStore

DEFAULT_CANDIDATES = 256  # re-ranked exactly per query; see bench/RESULTS.md for the choice
QUERY_BATCH = 128  # targets per candidate search (bounds its temporaries)
RERANK_BATCH = 16  # targets per exact re-rank (bounds the gathered candidate maps)
_NO_ROWS = np.zeros(0, dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class ExemplarMatch:
    """A pool entry chosen for a target; ``score`` is the exact layout score in [0, 1];
    ``classes``: the train IDs its small map shows (``coverage.cover_classes`` reads them)."""

    key: str
    label_path: str
    photo_path: str
    label_format: str
    dataset: str
    score: float
    classes: tuple[int, ...] = ()


def draw(ranked: Sequence[ExemplarMatch], seed: int | None) -> ExemplarMatch:
    """The best match when ``seed`` is None or there is one; else a uniform draw among
    ``ranked`` from ``seed`` alone (same seed, same choice, on any worker)."""
    if not ranked:
        raise ValueError("nothing to draw from: the query returned no exemplar")
    if seed is None or len(ranked) == 1:
        return ranked[0]
    return ranked[int(np.random.default_rng(seed).integers(len(ranked)))]


class ExemplarIndex:
    """An exemplar pool in memory: summaries for the search, small maps for the re-rank."""

    def __init__(
        self, text: dict[str, pa.Array], small_maps: np.ndarray, descriptors: np.ndarray,
        areas: np.ndarray,
    ):  # fmt: skip
        if len(small_maps) == 0:
            raise EmptyPoolError("<index>", "the exemplar index holds no entry")
        self._text = text
        self._small_maps = small_maps
        self._areas = areas
        self._search = CandidateSearch(descriptors, areas)
        frame_hashes = np.array([_frame_hash(f) for f in text["frame"].to_pylist()], np.int64)
        self._frame_order = np.argsort(frame_hashes, kind="stable")
        self._sorted_frame_hashes = frame_hashes[self._frame_order]

    @classmethod
    def load(cls, path: str) -> "ExemplarIndex":
        """Read an index written by ``build_index``, row group by row group into
        preallocated arrays (peak memory: the index once, plus its descriptors once more
        while ``CandidateSearch`` lays them out)."""
        store = IndexStore(path)
        meta = store.read_meta()
        n = meta["rows"]
        if n == 0:
            raise EmptyPoolError(path, "the exemplar index holds no entry")
        small_maps = np.empty((n, MAP_SIZE), np.uint8)
        descriptors = np.empty((n, DESCRIPTOR_DIM), np.int8)
        areas = np.empty((n, NUM_CLASSES), np.int32)
        text: dict[str, list] = {name: [] for name in TEXT_COLUMNS}
        row = 0
        for part in meta["parts"]:
            parquet = store.open_part(part["file"])
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group)
                m = table.num_rows
                for name in TEXT_COLUMNS:
                    text[name].extend(table.column(name).chunks)
                small_maps[row : row + m] = _fixed_lists(table.column("small_map"), MAP_SIZE)
                descriptors[row : row + m] = _fixed_lists(
                    table.column("descriptor"), DESCRIPTOR_DIM
                )
                areas[row : row + m] = _fixed_lists(table.column("class_areas"), NUM_CLASSES)
                row += m
        if row != n:
            raise ValueError(f"index {path}: index.json lists {n} rows but its parts hold {row}")
        columns = {name: pa.concat_arrays(chunks) for name, chunks in text.items()}
        return cls(columns, small_maps.reshape(n, *MAP_SHAPE), descriptors, areas)

    def __len__(self) -> int:
        return len(self._small_maps)

    @property
    def small_maps(self) -> np.ndarray:
        """(N, *MAP_SHAPE) small maps, row i of entry i (e.g. for exhaustive scoring)."""
        return self._small_maps

    @property
    def class_areas(self) -> np.ndarray:
        """(N, NUM_CLASSES) class sample counts of the small maps."""
        return self._areas

    def query(
        self,
        label_maps: Sequence[np.ndarray],
        k: int = 1,
        *,
        target_paths: Sequence[str | None],
        exclude_self: bool = True,
        candidates: int = DEFAULT_CANDIDATES,
    ) -> list[list[ExemplarMatch]]:
        """The best ``k`` pool entries for each (H, W) train-ID map, best first.

        A list shorter than ``k`` (possibly empty) means fewer entries were allowed,
        e.g. a pool holding only the target's own frame. Equal scores are ordered by
        pool position, so results depend only on the map, its path and the index.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if len(target_paths) != len(label_maps):
            raise ValueError("target_paths needs one entry (a path or None) per label map")
        count = min(max(candidates, k), len(self))
        results: list[list[ExemplarMatch]] = []
        for start in range(0, len(label_maps), QUERY_BATCH):
            maps = label_maps[start : start + QUERY_BATCH]
            paths = target_paths[start : start + QUERY_BATCH]
            small = np.stack([downsample_nearest(m) for m in maps])
            excluded = [self.rows_of_frame(p) if p and exclude_self else _NO_ROWS for p in paths]
            rows, _ = self._search.search(
                layout_descriptors(small), class_areas(small), count, excluded
            )
            for sub in range(0, len(small), RERANK_BATCH):
                results.extend(
                    self._rerank(small[sub : sub + RERANK_BATCH], rows[sub : sub + RERANK_BATCH], k)
                )
        return results

    def rows_of_frame(self, path: str) -> np.ndarray:
        """Pool rows showing the same frame as ``path`` (see ``frames.frame_id``)."""
        h = _frame_hash(frame_id(path))
        lo = np.searchsorted(self._sorted_frame_hashes, h, side="left")
        hi = np.searchsorted(self._sorted_frame_hashes, h, side="right")
        return self._frame_order[lo:hi]

    def _rerank(self, small: np.ndarray, rows: np.ndarray, k: int) -> list[list[ExemplarMatch]]:
        valid = rows >= 0
        safe_rows = np.where(valid, rows, 0)
        exact = layout_scores(small, self._small_maps[safe_rows], self._areas[safe_rows])
        exact[~valid] = -np.inf
        out = []
        for b in range(len(small)):
            order = np.lexsort((rows[b], -exact[b]))[:k]  # score desc, then pool position
            out.append(
                [self._match(int(rows[b, i]), float(exact[b, i])) for i in order if valid[b, i]]
            )
        return out

    def _match(self, row: int, score: float) -> ExemplarMatch:
        text = {name: self._text[name][row].as_py() for name in TEXT_COLUMNS if name != "frame"}
        classes = tuple(int(c) for c in np.flatnonzero(self._areas[row]))
        return ExemplarMatch(score=score, classes=classes, **text)


def _fixed_lists(column: pa.ChunkedArray, width: int) -> np.ndarray:
    values = [chunk.flatten().to_numpy(zero_copy_only=False) for chunk in column.chunks]
    return np.concatenate(values).reshape(-1, width)


def _frame_hash(frame: str) -> int:
    digest = hashlib.blake2b(frame.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)
