"""Fast candidate search over the whole pool, before the exact re-rank.

For a target T and every pool map E, an estimate of the exact score
(``score.py``) is computed from precomputed summaries only:

    estimate = W_IOU * cos_sum / (n_T + n_E - n_both) + W_COVERAGE * coverage

    cos_sum  = descriptor(T) . descriptor(E) / 127^2   (sum over shared classes of the
               cosine between their placements; stands in for the sum of IoU_c)
    n_T, n_E = number of classes each map shows,  n_both = shown by both
               (so the denominator is exactly the union the mIoU averages over)
    coverage = exact, from the target's class areas and the exemplar's class set

Only cos_sum approximates; the class-set terms are the exact score's own. On
synthetic street layouts this estimate ranks the exact best higher than the
plain cosine does (bench/RESULTS.md), so fewer candidates need the exact re-rank.

The products run in torch: descriptors as an int8 x int8 -> int32 matrix
product (``torch._int_mm``: exact, and about twice as fast as float32 BLAS on
the 2-core VNNI CPU of bench/RESULTS.md; a private torch API, hence the pinned
torch and the tests that compare the search with brute force), the class-set
terms as small float products, then ``torch.topk``.
The pool is processed in fixed chunks of rows, so memory per query batch is
bounded and a target's candidates do not depend on which other targets share
its batch.
"""

from __future__ import annotations

import numpy as np
import torch

from amadapter.retrieval.descriptor import DESCRIPTOR_SCALE
from amadapter.retrieval.score import W_COVERAGE, W_IOU

POOL_CHUNK = 32768  # pool rows per product: bounds the (batch x chunk) temporaries


class CandidateSearch:
    """The pool's summaries, held as torch tensors, and the search over them.

    ``descriptors`` (N, D) int8 and ``areas`` (N, C) class sample counts, row i
    describing pool entry i.
    """

    def __init__(self, descriptors: np.ndarray, areas: np.ndarray, chunk: int = POOL_CHUNK):
        if len(descriptors) != len(areas):
            raise ValueError("descriptors and areas must have one row per pool entry")
        self.size = len(descriptors)
        self._chunk = chunk
        # Transposed, contiguous chunks: the right-hand operand layout _int_mm is fastest with.
        self._descriptor_chunks = [
            torch.from_numpy(np.ascontiguousarray(descriptors[s : s + chunk].T))
            for s in range(0, self.size, chunk)
        ]
        presence = torch.from_numpy(np.asarray(areas) > 0).float()
        # Rows [presence; 1; n_E], so that [-presence_T, n_T, 1] @ it is the class union.
        self._class_side = torch.cat(
            [presence.T, torch.ones(1, self.size), presence.sum(1)[None]]
        ).contiguous()

    def search(
        self,
        descriptors: np.ndarray,
        areas: np.ndarray,
        count: int,
        excluded: list[np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``count`` pool rows with the highest estimate for each target.

        ``descriptors`` (B, D) int8 and ``areas`` (B, C) of the targets;
        ``excluded[b]``: pool rows target b must not get. Returns ``rows`` (B, count)
        int64 and their estimates (B, count) float32, best first; where fewer than
        ``count`` rows are allowed, the tail has row -1 and estimate -inf.
        """
        queries = torch.from_numpy(np.ascontiguousarray(descriptors, dtype=np.int8))
        target_areas = torch.from_numpy(np.asarray(areas, dtype=np.float32))
        presence = (target_areas > 0).float()
        b = len(queries)
        ones = torch.ones(b, 1)
        # Query-side rows: union = [-presence_T, n_T, 1] . [presence_E; 1; n_E], and
        # covered area = [areas_T, 0, 0] . the same. Sums of integers, exact in float32
        # whatever the summation order, so a target's estimates do not depend on its batch.
        query_side = torch.cat(
            [
                torch.cat([-presence, presence.sum(1, keepdim=True), ones], 1),
                torch.cat([target_areas, torch.zeros(b, 2)], 1),
            ]
        )
        target_total = target_areas.sum(1, keepdim=True)
        coverage_factor = torch.where(target_total > 0, W_COVERAGE / target_total.clamp(min=1), 0)
        iou_factor = W_IOU / DESCRIPTOR_SCALE**2
        best_scores = torch.full((b, 0), -torch.inf)
        best_rows = torch.zeros((b, 0), dtype=torch.int64)
        start = 0
        for chunk in self._descriptor_chunks:
            stop = start + chunk.shape[1]
            cos_sum = torch._int_mm(queries, chunk).float()  # times 127^2
            union, covered = (query_side @ self._class_side[:, start:stop]).split(b)
            estimate = torch.addcdiv(
                covered.mul_(coverage_factor), cos_sum, union.clamp_(min=1), value=iou_factor
            )
            if excluded is not None:
                _mask_rows(estimate, excluded, start, stop)
            top = torch.topk(estimate, min(count, stop - start), dim=1, sorted=False)
            best_scores = torch.cat([best_scores, top.values], 1)
            best_rows = torch.cat([best_rows, top.indices + start], 1)
            if best_scores.shape[1] > count:  # keep the running best `count`
                keep = torch.topk(best_scores, count, dim=1, sorted=False)
                best_scores, best_rows = keep.values, best_rows.gather(1, keep.indices)
            start = stop
        order = torch.argsort(best_scores, dim=1, descending=True, stable=True)
        # A target without labelled samples has coverage 1 with every exemplar (score.py).
        offset = torch.where(target_total > 0, 0.0, W_COVERAGE)
        scores = (best_scores.gather(1, order) + offset).numpy()
        rows = best_rows.gather(1, order).numpy()
        rows[~np.isfinite(scores)] = -1
        if rows.shape[1] < count:  # a pool smaller than `count`
            pad = count - rows.shape[1]
            rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return rows, scores


def _mask_rows(estimate: torch.Tensor, excluded: list[np.ndarray], start: int, stop: int) -> None:
    for b, rows in enumerate(excluded):
        inside = rows[(rows >= start) & (rows < stop)]
        if len(inside):
            estimate[b, torch.from_numpy(inside - start)] = -torch.inf
