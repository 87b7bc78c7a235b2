"""The coarse scan: for each target, the few thousand pool rows worth bounding exactly.

For a target T and every pool map E the scan computes one integer, from one int8
x int8 -> int32 matrix product over the whole pool (``torch._int_mm``: exact, and
fast on VNNI CPUs; a private torch API, hence the pinned torch and the tests that
compare the search with brute force):

    scan(T, E) = D_T . D_E + sum over the classes c that E shows of w_T(c)

    D_T . D_E  descriptor.coarse_descriptors: 127^2 times the sum, over the classes
               both maps show, of the cosine between their 2x4-cell placements
               (the stand-in for the sum of class IoUs of the exact score)
    w_T(c)     127^2 * (n_T * share_T(c) - EXTRA_CLASS_COST * [T does not show c])
               n_T: the classes T shows; share_T(c): T's area share of class c

That is 127^2 * n_T / W_IOU times W_IOU * (cos_sum - EXTRA_CLASS_COST * extra) / n_T
+ W_COVERAGE * coverage: the exact score's form (``score.py``, W_IOU = W_COVERAGE)
with its union of classes, n_T + extra, linearised around n_T, and coverage exact.
Being linear in E's summaries, it is one product with the query side [D_T; w_T]
against the pool side [D_E; 127 * presence_E], both int8 (the query side scaled
per target to fit; a target's ranking does not change with its scale).

Selecting the best ``count`` of a million scores per target would cost more than
the product, so a threshold is taken first from a fixed sample of the pool (every
``SAMPLE_STRIDE``-th row): the score that about ``count`` pool rows would reach
(within a few percent). The scan keeps the rows at or above it: the same rows
whatever the batch, as a target's candidates depend only on the target and the
pool, never on the other targets of its batch.

bench/RESULTS.md measures, at 1,000,000 entries, how far down this ranking the exact
best (or an entry within 1% of it) falls, which sets ``DEFAULT_CANDIDATES``; the bounds
(``score.TargetScorer``) then find the best among the candidates exactly. A 4x4-cell
descriptor (twice the product) ranked only a little better.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from amadapter.io.labels import NUM_CLASSES
from amadapter.retrieval.descriptor import COARSE_DIM, DESCRIPTOR_SCALE
from amadapter.retrieval.score import W_COVERAGE, W_IOU

EXTRA_CLASS_COST = 0.6  # a class only the exemplar shows, in cosines (bench/RESULTS.md)
SCAN_DIM = 176  # COARSE_DIM + NUM_CLASSES presence rows, padded to a multiple of 16
SCAN_CHUNK = 16384  # pool rows per product: bounds the (batch x chunk) int32 scores
SAMPLE_STRIDE = 16
THRESHOLD_BATCH = 32  # targets per product with the sample (8 MB of scores at 1M entries)
GROUP = 8  # scores compared as group maxima first (_passing)
_FLOOR = torch.iinfo(torch.int32).min  # the score of an excluded row
_NO_ROWS = np.zeros(0, dtype=np.int64)


def pool_side(descriptors: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """(n, COARSE_DIM) descriptors and (n, C) class areas -> (n, SCAN_DIM) int8 rows of
    the product's pool side: [D_E; 127 * presence_E; zero padding]."""
    rows = np.zeros((len(descriptors), SCAN_DIM), np.int8)
    rows[:, :COARSE_DIM] = descriptors
    rows[:, COARSE_DIM : COARSE_DIM + NUM_CLASSES] = np.where(areas > 0, DESCRIPTOR_SCALE, 0)
    return rows


def query_side(descriptors: np.ndarray, areas: np.ndarray) -> torch.Tensor:
    """(B, COARSE_DIM) descriptors and (B, C) class areas of the targets -> (B, SCAN_DIM)
    int8: [D_T; w_T / 127], divided by what makes its largest value fit in int8."""
    areas = np.asarray(areas, dtype=np.float64)
    shown = areas > 0
    total = areas.sum(1, keepdims=True)
    share = np.divide(areas, total, out=np.zeros_like(areas), where=total > 0)
    n_shown = shown.sum(1, keepdims=True)
    weights = DESCRIPTOR_SCALE * (
        (W_COVERAGE / W_IOU) * n_shown * share - EXTRA_CLASS_COST * ~shown
    )  # w_T / 127: the pool side holds 127 per class shown
    side = np.zeros((len(descriptors), SCAN_DIM))
    side[:, :COARSE_DIM] = descriptors
    side[:, COARSE_DIM : COARSE_DIM + NUM_CLASSES] = weights
    scale = np.maximum(np.abs(side).max(1, keepdims=True) / 127, 1.0)
    return torch.from_numpy(np.rint(side / scale).astype(np.int8))


class CandidateSearch:
    """The scan over a pool's product rows, held as ``(SCAN_DIM, width)`` int8 chunks of
    ``SCAN_CHUNK`` consecutive rows (the right-hand layout ``_int_mm`` is fastest with;
    e.g. memory-mapped, ``mapped.py``), and ``sample``, the chunk of every
    ``SAMPLE_STRIDE``-th row."""

    def __init__(self, chunks: list[np.ndarray], sample: np.ndarray):
        self._chunks = [torch.from_numpy(chunk) for chunk in chunks]
        self._sample = torch.from_numpy(sample)
        self.size = sum(chunk.shape[1] for chunk in chunks)

    def search(
        self, queries: torch.Tensor, count: int, excluded: list[np.ndarray]
    ) -> np.ndarray:
        """About the best ``count`` rows by scan score per target (``queries``:
        ``query_side``), or every row when the pool has no more than ``count``;
        ``excluded[b]``: rows target b must not get. -> (B, width) int64, each target's
        rows ascending, -1 padded."""
        b = len(queries)
        if count >= self.size:  # nothing to scan: every allowed row is a candidate
            out = np.full((b, count), -1, dtype=np.int64)
            for target, rows in enumerate(excluded):
                allowed = np.setdiff1d(np.arange(self.size), rows)
                out[target, : len(allowed)] = allowed
            return out
        threshold = self._threshold(queries, count)
        excluded_targets = np.concatenate(
            [np.full(len(rows), t, np.int64) for t, rows in enumerate(excluded)] + [_NO_ROWS]
        )
        excluded_rows = np.concatenate(list(excluded) + [_NO_ROWS])
        by_row = np.argsort(excluded_rows, kind="stable")
        excluded_targets, excluded_rows = excluded_targets[by_row], excluded_rows[by_row]
        hit_targets, hit_rows = [], []
        start = 0
        for chunk in self._chunks:
            stop = start + chunk.shape[1]
            scores = torch._int_mm(queries, chunk)
            inside = slice(*np.searchsorted(excluded_rows, [start, stop]))
            scores[excluded_targets[inside], excluded_rows[inside] - start] = _FLOOR
            targets, columns = _passing(scores, threshold)
            hit_targets.append(targets.numpy())
            hit_rows.append(columns.numpy() + start)
            start = stop
        return _by_target(np.concatenate(hit_targets), np.concatenate(hit_rows), b)

    def _threshold(self, queries: torch.Tensor, count: int) -> torch.Tensor:
        """(B, 1) the scan score that about ``count`` pool rows reach, from the sample."""
        width = self._sample.shape[1]
        kth = min(width, math.ceil(count * width / self.size))
        parts = []
        for start in range(0, len(queries), THRESHOLD_BATCH):  # bounds the sample's scores
            sample_scores = torch._int_mm(queries[start : start + THRESHOLD_BATCH], self._sample)
            parts.append(torch.topk(sample_scores, kth, dim=1).values[:, -1:])
        return torch.cat(parts)


def _passing(scores: torch.Tensor, threshold: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets, columns) of the scores at or above each target's threshold. Comparing a
    million scores per target one by one and collecting the few that pass costs more
    than the product; so the maximum of each group of ``GROUP`` columns is compared
    first, and only the groups that pass are looked into."""
    b, width = scores.shape
    whole = width - width % GROUP
    groups = scores[:, :whole].reshape(b, -1, GROUP)
    target, group = (groups.amax(2) >= threshold).nonzero(as_tuple=True)
    passed = groups[target, group] >= threshold[target]  # (passing groups, GROUP)
    targets = target[:, None].expand(-1, GROUP)[passed]
    columns = (group[:, None] * GROUP + torch.arange(GROUP))[passed]
    tail_target, tail_column = (scores[:, whole:] >= threshold).nonzero(as_tuple=True)
    return torch.cat([targets, tail_target]), torch.cat([columns, tail_column + whole])


def _by_target(targets: np.ndarray, rows: np.ndarray, b: int) -> np.ndarray:
    """(B, most hits of a target) rows, each target's in ascending order, -1 padded."""
    order = np.argsort(targets.astype(np.int16), kind="stable")  # a radix sort
    targets, rows = targets[order], rows[order]
    hits = np.bincount(targets, minlength=b)
    out = np.full((b, max(int(hits.max(initial=0)), 1)), -1, dtype=np.int64)
    out[targets, np.arange(len(targets)) - (np.cumsum(hits) - hits)[targets]] = rows
    return out
