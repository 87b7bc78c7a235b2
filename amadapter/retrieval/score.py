"""The exact layout score between a target label map and an exemplar's.

Both maps are compared as small maps (``descriptor.downsample_nearest``, 32x64
class indices). With, for every class c of the 19 train classes,

    T_c = target samples of class c,  E_c = exemplar samples of class c,
    IoU_c = |T_c & E_c| / |T_c | E_c|,

the score is

    score = W_IOU * mIoU + W_COVERAGE * coverage                      in [0, 1]

    mIoU     = mean of IoU_c over the classes present in either map
    coverage = sum of |T_c| over the classes the exemplar shows at all
               / sum of |T_c| over all classes   (1 when the target has no labelled sample)

mIoU rewards the same classes in the same places, each class counting alike
(a pole matters as much as the road, as in segmentation mIoU); a class shown by
only one of the two maps costs a zero term. Coverage is the share of the
target's pixels whose class the exemplar can lend an appearance for: AM-Adapter
matches appearance class by class, so a target class the exemplar lacks gets
none. Ignore samples (255) count in neither term.

Weights 0.5 / 0.5. The adapter matches appearance class by class, not by
position: a class the exemplar shows in another place still finds its
appearance, a class it lacks finds none. So losing a share x of the target's
pixels to a missing class costs 0.5 x, as much as a mIoU drop of x; with 0.75 /
0.25 an exemplar without the target's car (9% of the pixels) beat one with the
car on the other side of the road (tests/test_retrieval_score.py). Between
exemplars that show all the target's classes (the usual case) only mIoU ranks.
"""

from __future__ import annotations

import numpy as np
import torch

from amadapter.io.labels import NUM_CLASSES
from amadapter.retrieval.descriptor import COARSE_COUNT_SCALE

W_IOU = 0.5
W_COVERAGE = 0.5
_CLASSES = np.arange(NUM_CLASSES, dtype=np.uint8)
_ONES = np.ones(NUM_CLASSES, np.float32)


def class_areas(small_maps: np.ndarray) -> np.ndarray:
    """(N, h, w) small maps -> (N, NUM_CLASSES) int32 sample counts per class (ignore dropped)."""
    flat = np.asarray(small_maps, dtype=np.uint8).reshape(len(small_maps), -1)
    width = NUM_CLASSES + 1
    codes = flat + (width * np.arange(flat.shape[0], dtype=np.int32))[:, None]
    counts = np.bincount(codes.ravel(), minlength=flat.shape[0] * width)
    return counts.reshape(flat.shape[0], width)[:, :NUM_CLASSES].astype(np.int32)


def scores_from_counts(
    intersections: np.ndarray, target_areas: np.ndarray, exemplar_areas: np.ndarray
) -> np.ndarray:
    """The formula of this module from per-class sample counts.

    ``intersections`` (B, M, C), ``target_areas`` (B, 1, C) and ``exemplar_areas``
    (B or 1, M, C) -> (B, M) float32 scores.
    """
    inter = intersections.astype(np.float32)
    target = target_areas.astype(np.float32)
    exemplar = exemplar_areas.astype(np.float32)
    union = target + exemplar - inter
    # Sums over the classes as products with a ones vector: numpy's reduction over a short
    # last axis costs several times more. Where union is 0, so is inter: iou 0.
    iou_sum = (inter / np.maximum(union, 1)) @ _ONES
    miou = iou_sum / np.maximum((union > 0).astype(np.float32) @ _ONES, 1)
    target_total = target.sum(-1)
    covered = np.matmul((exemplar > 0).astype(np.float32), np.swapaxes(target, -1, -2))[..., 0]
    coverage = np.where(target_total > 0, covered / np.maximum(target_total, 1), 1.0)
    return (W_IOU * miou + W_COVERAGE * coverage).astype(np.float32)


_LOW_BYTES = np.uint64(0x00FF00FF00FF00FF)
_LANES = np.uint64(0x0001000100010001)


def byte_sums(values: np.ndarray) -> np.ndarray:
    """(..., n) uint8 -> (...) int32 sums over the last axis (n a multiple of 8), eight
    bytes at a time: numpy's own reduction over a short axis is ten times slower."""
    words = np.ascontiguousarray(values).view(np.uint64)  # (..., n / 8)
    pairs = (words & _LOW_BYTES) + ((words >> np.uint64(8)) & _LOW_BYTES)  # 4 x 16-bit lanes
    sums = (pairs * _LANES) >> np.uint64(48)  # the top lane collects all four (<= 2040)
    return sums.sum(-1, dtype=np.int32) if sums.shape[-1] > 1 else sums[..., 0].astype(np.int32)


class TargetScorer:
    """Exact scores of one target against pool rows, and upper bounds of them that read no
    pixel, both computed on the classes the target shows only (a class it lacks shares no
    sample with anything: it counts only in the union of classes, through ``shown``).

    Bounds: within a cell of ``descriptor.cell_counts``, two maps share at most
    min(count_T, count_E) samples of a class, so the sum over cells bounds |T_c & E_c|
    from above (as does min(|T_c|, |E_c|)); IoU_c grows with the intersection at fixed
    areas, and coverage depends on the areas only, so the formula on those
    intersections bounds the exact score. Exact scores and bounds go through the same
    float32 arithmetic (``_scores``), so a bound stays at or above its exact score up to
    the rounding of two sums in another order (the search allows for 1e-6).
    """

    def __init__(self, small: np.ndarray, counts: np.ndarray, coarse: np.ndarray):
        """``small``: the target's small map; ``counts``, ``coarse``: its ``cell_counts``
        and ``coarse_counts``."""
        flat = np.asarray(small, dtype=np.uint8).reshape(-1)
        areas = class_areas(flat[None])[0]
        self.classes = np.flatnonzero(areas)
        self._areas = areas[self.classes].astype(np.float32)
        self._flat = flat
        shows = flat[None] == self.classes[:, None].astype(np.uint8)
        self._masks = np.packbits(shows, axis=-1).view(np.uint64)  # (n, samples / 64)
        self._counts, self._coarse = counts, coarse  # zero for the classes it lacks

    def exact(self, maps: np.ndarray, areas: np.ndarray, shown: np.ndarray) -> np.ndarray:
        """``maps`` (M, *MAP_SHAPE) small maps, ``areas`` (M, C) their ``class_areas``,
        ``shown`` (M,) how many classes each shows -> (M,) float32 exact scores.

        Counting: the samples where a map agrees with the target, packed into bits,
        ANDed with the target's bit mask of each class and popcounted."""
        agree = np.packbits(maps.reshape(len(maps), -1) == self._flat, axis=-1).view(np.uint64)
        shared = np.bitwise_count(agree[:, None, :] & self._masks[None])  # (M, n, words)
        return self._scores(byte_sums(shared), areas[:, self.classes], shown)

    def bounds(
        self, cell_counts: np.ndarray, areas: np.ndarray, shown: np.ndarray, coarse: bool
    ) -> np.ndarray:
        """Upper bounds of ``exact`` from the rows' ``cell_counts`` (M, C, cells), or with
        ``coarse`` their ``coarse_counts``; ``areas`` and ``shown`` as for ``exact``."""
        mine, scale = (self._coarse, COARSE_COUNT_SCALE) if coarse else (self._counts, 1)
        # Every class at once (contiguous rows; the target's own counts are 0 elsewhere).
        shared = byte_sums(np.minimum(cell_counts, mine))[:, self.classes] * scale
        theirs = areas[:, self.classes]
        # A halved count can exceed a class's area; the intersection cannot.
        shared = np.minimum(shared, np.minimum(theirs, self._areas))
        return self._scores(shared, theirs, shown)

    def _scores(self, shared: np.ndarray, theirs: np.ndarray, shown: np.ndarray) -> np.ndarray:
        """The module's formula from the intersections (M, n) and the rows' areas (M, n) on
        the target's classes."""
        inter = shared.astype(np.float32)
        theirs = theirs.astype(np.float32)
        ones = np.ones(len(self.classes), np.float32)
        # Sums over classes as products with a ones vector: numpy's reduction over a short
        # last axis costs several times more. The target shows each class: no union is 0.
        iou_sum = (inter / (self._areas + theirs - inter)) @ ones
        both = (theirs > 0).astype(np.float32)
        present = len(self.classes) + shown.astype(np.float32) - both @ ones
        miou = iou_sum / np.maximum(present, 1)
        total = self._areas.sum()
        coverage = (both @ self._areas) / total if total > 0 else np.ones(len(inter), np.float32)
        return (W_IOU * miou + W_COVERAGE * coverage).astype(np.float32)


def layout_scores(
    targets: np.ndarray, candidates: np.ndarray, candidate_areas: np.ndarray | None = None
) -> np.ndarray:
    """Score each target against its own candidate list, batched (the index scores one
    target at a time, on its own classes: ``TargetScorer``; this is its cross-check).

    targets (B, h, w) and candidates (B, M, h, w) small maps -> (B, M) float32.
    ``candidate_areas`` (B, M, C), the candidates' ``class_areas``, saves recounting
    them when the caller keeps them (the index does).

    Counting: the samples where a candidate agrees with the target, packed into
    bits, ANDed with the target's bit mask of each class and popcounted; about
    ten times faster than a float product with a one-hot matrix of 19 columns.
    """
    b, m = candidates.shape[:2]
    t = np.asarray(targets, dtype=np.uint8).reshape(b, -1)
    c = np.asarray(candidates, dtype=np.uint8).reshape(b, m, -1)
    agree = np.packbits(c == t[:, None, :], axis=-1)  # (B, M, P/8)
    class_masks = np.packbits(t[:, None, :] == _CLASSES[None, :, None], axis=-1)  # (B, C, P/8)
    if agree.shape[-1] % 8 == 0:  # popcount eight bytes at a time
        agree, class_masks = agree.view(np.uint64), class_masks.view(np.uint64)
    shared = agree[:, :, None, :] & class_masks[:, None, :, :]
    intersections = np.bitwise_count(shared).sum(-1, dtype=np.int32)  # (B, M, C)
    target_areas = class_areas(t)[:, None, :]
    if candidate_areas is None:
        candidate_areas = class_areas(c.reshape(b * m, -1)).reshape(b, m, NUM_CLASSES)
    return scores_from_counts(intersections, target_areas, candidate_areas)


def layout_scores_against_pool(
    targets: np.ndarray,
    pool_maps: np.ndarray,
    pool_areas: np.ndarray | None = None,
    chunk: int = 2048,
) -> np.ndarray:
    """Score every target against every pool map: the brute-force reference.

    targets (B, h, w), pool_maps (N, h, w) -> (B, N) float32. Intersections are
    one integer (B x P) @ (P x chunk) product of 0/1 matrices per class, exact in
    int32, skipped where no target or no pool map of the chunk shows the class.
    """
    b = len(targets)
    t = np.asarray(targets, dtype=np.uint8).reshape(b, -1)
    pool = np.asarray(pool_maps, dtype=np.uint8).reshape(len(pool_maps), -1)
    areas = class_areas(pool) if pool_areas is None else np.asarray(pool_areas)
    target_areas = class_areas(t)
    onehot_t = [torch.from_numpy((t == k).view(np.int8)) for k in range(NUM_CLASSES)]
    out = np.empty((b, len(pool)), dtype=np.float32)
    for start in range(0, len(pool), chunk):
        part = pool[start : start + chunk]
        part_areas = areas[start : start + chunk]
        intersections = np.zeros((NUM_CLASSES, b, len(part)), dtype=np.int32)
        for k in range(NUM_CLASSES):
            if target_areas[:, k].any() and part_areas[:, k].any():
                onehot_p = torch.from_numpy((part.T == k).view(np.int8))  # (P, chunk)
                intersections[k] = torch._int_mm(onehot_t[k], onehot_p).numpy()
        out[:, start : start + chunk] = scores_from_counts(
            intersections.transpose(1, 2, 0), target_areas[:, None, :], part_areas[None]
        )
    return out
