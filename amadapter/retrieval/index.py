"""Open an exemplar index once, then query it in batches.

    index = ExemplarIndex.load("out/index")
    ranked = index.query(label_maps, k=4, target_paths=label_paths)  # best first, per map
    chosen = [draw(r, seed) for r, seed in zip(ranked, seeds)]        # top-1, or a seeded draw

A query runs in three stages, each on fewer pool entries:

1. the coarse scan (``candidates.py``): one int8 product over the whole pool ranks
   every entry by a linear stand-in for the exact score and keeps the best
   ``candidates`` (default 8,192);
2. loose bounds (``score.TargetScorer.bounds`` on ``coarse_counts``, 152 bytes an
   entry): an upper bound of each candidate's exact score, no pixel read; the
   exact scores of the best ``EXACT_BLOCK`` by it give a k-th best score to beat,
   and only the candidates whose loose bound reaches it (a few hundred) get
3. tight bounds (``cell_counts``, 608 bytes an entry) and then exact scores in
   descending tight bound order, ``EXACT_BLOCK`` at a time, until no bound left can
   beat the k-th best exact score found (a few dozen per target).

The result is the exact best ``k`` among the candidates, and the returned score is
always the exact one. Whether the pool's best is among the candidates is the scan's
part (bench/RESULTS.md: at 1,000,000 entries, the best or one within 1% of it).

Self-exclusion: ``target_paths`` names each map's file, and pool entries of the
same frame (``frames.frame_id``: for Cityscapes the same city_sequence_frame
stem) are never returned for it unless ``exclude_self=False``. It is a required
argument so that no caller forgets it; pass ``None`` for a map that comes from
no file.

Memory: the index is memory-mapped (``mapped.py``), nothing is loaded. What a
querying process ends up holding resident, per pool entry: 176 bytes of scan rows
(and 11 of the scan's sample), 152 of coarse counts, 608 of counts, 38 of class
areas, 16 of frame lookup, 1 of class count, about 1 kB, shared by the processes
of a machine that open the same index; small maps are read (``pread``) for the
few dozen candidates per target that get exact scores, strings for the results.
bench/RESULTS.md has the peak memory of a process that opens the index the first
time and queries it, at 1,000,000 entries.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from amadapter.io.errors import EmptyPoolError
from amadapter.retrieval.candidates import CandidateSearch, query_side
from amadapter.retrieval.descriptor import (
    cell_counts,
    coarse_counts,
    coarse_descriptors,
    downsample_nearest,
)
from amadapter.retrieval.frames import frame_hash, frame_id
from amadapter.retrieval.mapped import MATCH_COLUMNS, MappedIndex, open_mapped
from amadapter.retrieval.score import TargetScorer, class_areas
from amadapter.retrieval.store import IndexStore

DEFAULT_CANDIDATES = 8192  # bounded per target after the scan; see bench/RESULTS.md
QUERY_BATCH = 256  # targets per scan (bounds its temporaries: 16 MB of scores per chunk)
TIGHT_BLOCK = 256  # candidates given tight bounds per round
EXACT_BLOCK = 16  # candidates scored exactly per round
BOUND_MARGIN = 1e-6  # bounds and exact scores are float32: keep scoring within this
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
    """An exemplar pool, memory-mapped: the scan's rows, the bounds' counts, the small maps."""

    def __init__(self, mapped: MappedIndex):
        if mapped.size == 0:
            raise EmptyPoolError("<index>", "the exemplar index holds no entry")
        self._mapped = mapped
        self._search = CandidateSearch(mapped.scan_chunks, mapped.scan_sample)
        self._shown = (mapped.areas > 0).sum(1, dtype=np.uint8)  # classes each entry shows

    @classmethod
    def load(cls, path: str) -> "ExemplarIndex":
        """Open an index written by ``build_index`` (``mapped.py`` derives its mapped files
        on first use on this machine: about a minute per million entries)."""
        store = IndexStore(path)
        if store.read_meta()["rows"] == 0:
            raise EmptyPoolError(path, "the exemplar index holds no entry")
        return cls(open_mapped(store))

    def __len__(self) -> int:
        return self._mapped.size

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

        ``candidates``: entries kept by the scan and bounded per map (the pool's size
        or more: every entry, so the result is the exact best ``k`` of the pool).
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
            counts, areas = cell_counts(small), class_areas(small)
            excluded = [self.rows_of_frame(p) if p and exclude_self else _NO_ROWS for p in paths]
            rows = self._search.search(
                query_side(coarse_descriptors(counts), areas), count, excluded
            )
            coarse = coarse_counts(counts)
            for b in range(len(small)):
                allowed = rows[b][rows[b] >= 0]
                results.append(
                    self._best(small[b], counts[b], coarse[b], allowed, k) if len(allowed) else []
                )
        return results

    def rows_of_frame(self, path: str) -> np.ndarray:
        """Pool rows showing the same frame as ``path`` (see ``frames.frame_id``)."""
        h = frame_hash(frame_id(path))
        lo = np.searchsorted(self._mapped.frame_hashes, h, side="left")
        hi = np.searchsorted(self._mapped.frame_hashes, h, side="right")
        return self._mapped.frame_rows[lo:hi]

    def _best(
        self, small: np.ndarray, counts: np.ndarray, coarse: np.ndarray, rows: np.ndarray, k: int
    ) -> list[ExemplarMatch]:
        """Stages 2 and 3 of the module docstring for one target and its candidate rows,
        a branch and bound: candidates in descending loose bound order, ``TIGHT_BLOCK``
        at a time, get tight bounds, and those whose tight bound can still beat the k-th
        best exact score so far get exact scores, in descending tight bound order; it
        stops when no loose bound left can beat the k-th best."""
        pool = self._mapped
        scorer = TargetScorer(small, counts, coarse)
        areas, shown = np.take(pool.areas, rows, axis=0), self._shown[rows]
        loose = scorer.bounds(np.take(pool.coarse_counts, rows, axis=0), areas, shown, True)
        by_loose = np.argsort(-loose)
        best = Best(k)
        for start in range(0, len(rows), TIGHT_BLOCK):
            block = by_loose[start : start + TIGHT_BLOCK]
            block = block[loose[block] >= best.kth - BOUND_MARGIN]
            if not len(block):
                break  # sorted: no loose bound left can beat the k-th best
            tight = scorer.bounds(
                np.take(pool.counts, rows[block], axis=0), areas[block], shown[block], False
            )
            by_tight = np.argsort(-tight)
            block, tight = block[by_tight], tight[by_tight]
            for sub in range(0, len(block), EXACT_BLOCK):
                if tight[sub] < best.kth - BOUND_MARGIN:
                    break
                at = block[sub : sub + EXACT_BLOCK]
                maps = pool.read_small_maps(rows[at])
                best.add(rows[at], scorer.exact(maps, areas[at], shown[at]))
        return [self._match(row, value) for row, value in best.top()]

    def _match(self, row: int, score: float) -> ExemplarMatch:
        text = {name: self._mapped.text.column(name)[row].as_py() for name in MATCH_COLUMNS}
        classes = tuple(int(c) for c in np.flatnonzero(self._mapped.areas[row]))
        return ExemplarMatch(score=score, classes=classes, **text)


class Best:
    """The exact scores of one target's candidates so far, and its k-th best."""

    def __init__(self, k: int):
        self._k = k
        self._rows: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self.kth = -np.inf  # the k-th best score so far (-inf until k are scored)

    def add(self, rows: np.ndarray, scores: np.ndarray) -> None:
        self._rows.append(rows)
        self._scores.append(scores)
        everything = np.concatenate(self._scores)
        if len(everything) >= self._k:
            self.kth = float(-np.partition(-everything, self._k - 1)[self._k - 1])

    def top(self) -> list[tuple[int, float]]:
        """The best k (row, exact score), score desc, then pool position."""
        rows, scores = np.concatenate(self._rows), np.concatenate(self._scores)
        order = np.lexsort((rows, -scores))[: self._k]
        return [(int(rows[i]), float(scores[i])) for i in order]
