"""Open an exemplar index once, then query it in batches.

    index = ExemplarIndex.load("out/index")
    ranked = index.query(label_maps, k=4, target_paths=label_paths)  # best first, per map
    chosen = [draw(r, seed) for r, seed in zip(ranked, seeds)]        # top-1, or a seeded draw

A query runs in three stages, each on fewer pool entries:

1. the coarse scan (``candidates.py``): one int8 product over the whole pool ranks
   every entry by a linear stand-in for the exact score and keeps the best
   ``candidates`` (default 4,096);
2. bounds (``score.layout_score_bounds``): an upper bound of each candidate's exact
   score from per-cell class counts, no pixel read;
3. exact scores (``score.layout_scores``), candidates taken in descending bound
   order, ``EXACT_BLOCK`` at a time, until no bound left can beat the k-th best
   exact score found. The result is the exact best ``k`` among the candidates, and
   usually costs a few dozen exact scores per target. The returned score is always
   the exact one.

Self-exclusion: ``target_paths`` names each map's file, and pool entries of the
same frame (``frames.frame_id``: for Cityscapes the same city_sequence_frame
stem) are never returned for it unless ``exclude_self=False``. It is a required
argument so that no caller forgets it; pass ``None`` for a map that comes from
no file.

Memory: the index is memory-mapped (``mapped.py``), nothing is loaded. Resident
per pool entry: 176 bytes of scan rows, 608 of cell counts, 38 of class areas and
16 of frame lookup, about 0.84 kB (0.84 GB at 1,000,000 entries), shared by the
processes of a machine; small maps and strings are read only for candidates and
results. Measured at 1,000,000 entries: bench/RESULTS.md.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from amadapter.io.errors import EmptyPoolError
from amadapter.retrieval.candidates import CandidateSearch, query_side
from amadapter.retrieval.descriptor import cell_counts, coarse_descriptors, downsample_nearest
from amadapter.retrieval.frames import frame_hash, frame_id
from amadapter.retrieval.mapped import MATCH_COLUMNS, MappedIndex, open_mapped
from amadapter.retrieval.score import class_areas, layout_score_bounds, layout_scores
from amadapter.retrieval.store import IndexStore

DEFAULT_CANDIDATES = 4096  # bounded per target after the scan; see bench/RESULTS.md
QUERY_BATCH = 128  # targets per scan (bounds its temporaries)
BOUND_BATCH = 16  # targets per bound and exact stage (bounds the gathered candidate rows)
EXACT_BLOCK = 16  # candidates scored exactly per target per round
BOUND_MARGIN = 1e-6  # bounds and exact scores are float32: keep scoring within this
_NO_ROWS = np.zeros(0, dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class ExemplarMatch:
    """A pool entry chosen for a target; ``score`` is the exact layout score in [0, 1]."""

    key: str
    label_path: str
    photo_path: str
    label_format: str
    dataset: str
    score: float


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

    @property
    def small_maps(self) -> np.ndarray:
        """(N, *MAP_SHAPE) small maps, row i of entry i (e.g. for exhaustive scoring)."""
        return self._mapped.small_maps

    @property
    def class_areas(self) -> np.ndarray:
        """(N, NUM_CLASSES) class sample counts of the small maps."""
        return self._mapped.areas

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
            for sub in range(0, len(small), BOUND_BATCH):
                part = slice(sub, sub + BOUND_BATCH)
                results.extend(self._best(small[part], counts[part], areas[part], rows[part], k))
            self._mapped.release_small_maps()
        return results

    def rows_of_frame(self, path: str) -> np.ndarray:
        """Pool rows showing the same frame as ``path`` (see ``frames.frame_id``)."""
        h = frame_hash(frame_id(path))
        lo = np.searchsorted(self._mapped.frame_hashes, h, side="left")
        hi = np.searchsorted(self._mapped.frame_hashes, h, side="right")
        return self._mapped.frame_rows[lo:hi]

    def _best(
        self, small: np.ndarray, counts: np.ndarray, areas: np.ndarray, rows: np.ndarray, k: int
    ) -> list[list[ExemplarMatch]]:
        """Stages 2 and 3 of the module docstring for a few targets."""
        pool = self._mapped
        valid = rows >= 0
        safe = np.where(valid, rows, 0)
        bounds = layout_score_bounds(counts, pool.counts[safe], areas, pool.areas[safe])
        bounds[~valid] = -np.inf
        order = np.lexsort((rows, -bounds), axis=1)  # bound desc, then pool position
        rows, bounds = np.take_along_axis(rows, order, 1), np.take_along_axis(bounds, order, 1)
        exact = np.full(rows.shape, -np.inf, np.float32)
        active = np.arange(len(small))
        done = 0
        while len(active) and done < rows.shape[1]:
            block_rows = rows[active, done : done + EXACT_BLOCK]
            scores = layout_scores(small[active], pool.small_maps[np.maximum(block_rows, 0)],
                                   pool.areas[np.maximum(block_rows, 0)])  # fmt: skip
            exact[active, done : done + EXACT_BLOCK] = np.where(block_rows >= 0, scores, -np.inf)
            done += EXACT_BLOCK
            if done >= rows.shape[1]:
                break
            kth = -np.sort(-exact[active, :done], axis=1)[:, min(k, done) - 1]
            next_bound = bounds[active, done]
            active = active[np.isfinite(next_bound) & (next_bound >= kth - BOUND_MARGIN)]
        out = []
        for b in range(len(small)):
            seen = np.isfinite(exact[b])
            top = np.lexsort((rows[b][seen], -exact[b][seen]))[:k]  # score desc, then position
            out.append([self._match(int(rows[b][seen][i]), float(exact[b][seen][i])) for i in top])
        return out

    def _match(self, row: int, score: float) -> ExemplarMatch:
        text = {name: self._mapped.text.column(name)[row].as_py() for name in MATCH_COLUMNS}
        return ExemplarMatch(score=score, **text)
