"""Layout summaries of a label map used by exemplar retrieval.

Everything retrieval compares is derived from one small map: the label map
nearest-downsampled to ``MAP_SHAPE`` (nearest, so every value stays a real train
ID and no boundary pixel is invented). Maps of any size and aspect ratio land on
the same grid, so a 2:1 Cityscapes frame and a 16:9 BDD100K frame compare in
normalised image coordinates.

The coarse descriptor (``layout_descriptors``) only finds candidates fast; the
exact score (``score.py``) decides.
"""

from __future__ import annotations

import numpy as np

from amadapter.io.labels import IGNORE_ID, NUM_CLASSES, check_train_ids

MAP_SHAPE = (32, 64)  # rows, cols of the small map the exact score reads
GRID = (8, 16)  # cells of the coarse descriptor; each covers 4x4 samples of the small map
CELLS = GRID[0] * GRID[1]
DESCRIPTOR_DIM = NUM_CLASSES * CELLS  # 2432
DESCRIPTOR_SCALE = 127  # int8 descriptors hold round(127 * unit-length block)
# Small maps store class indices 0..18 and this value for "ignore", so they can
# index per-class arrays of length NUM_CLASSES + 1 directly.
SMALL_IGNORE = NUM_CLASSES


def downsample_nearest(train_ids: np.ndarray, shape: tuple[int, int] = MAP_SHAPE) -> np.ndarray:
    """(H, W) train IDs -> ``shape`` uint8 class indices (0..18, ``SMALL_IGNORE``) by nearest
    sampling at cell centres."""
    train_ids = check_train_ids(np.asarray(train_ids))
    height, width = train_ids.shape
    rows = ((np.arange(shape[0]) + 0.5) * height / shape[0]).astype(np.int64)
    cols = ((np.arange(shape[1]) + 0.5) * width / shape[1]).astype(np.int64)
    small = train_ids[rows[:, None], cols[None, :]]
    return np.where(small == IGNORE_ID, SMALL_IGNORE, small).astype(np.uint8)


def cell_class_counts(small_maps: np.ndarray) -> np.ndarray:
    """(N, *MAP_SHAPE) small maps -> (N, CELLS, NUM_CLASSES) int32 sample counts per cell and
    class; ignore samples are not counted."""
    small_maps = np.asarray(small_maps, dtype=np.uint8)
    n = small_maps.shape[0]
    cell_h, cell_w = MAP_SHAPE[0] // GRID[0], MAP_SHAPE[1] // GRID[1]
    # (N, gy, cell_h, gx, cell_w) -> (N * cells, samples): each row is one cell.
    cells = small_maps.reshape(n, GRID[0], cell_h, GRID[1], cell_w).transpose(0, 1, 3, 2, 4)
    cells = cells.reshape(n * CELLS, cell_h * cell_w)
    width = NUM_CLASSES + 1
    codes = cells + (width * np.arange(n * CELLS, dtype=np.int32))[:, None]
    counts = np.bincount(codes.ravel(), minlength=n * CELLS * width)
    return counts.reshape(n, CELLS, width)[:, :, :NUM_CLASSES].astype(np.int32)


def layout_descriptors(small_maps: np.ndarray) -> np.ndarray:
    """(N, *MAP_SHAPE) small maps -> (N, DESCRIPTOR_DIM) int8 descriptors.

    One block of CELLS values per class: where that class lies (its sample count
    per cell), scaled to unit length, times ``DESCRIPTOR_SCALE``; a class the map
    does not show has a zero block. The inner product of two descriptors is then
    127^2 times the sum, over the classes both maps show, of the cosine between
    their placements: a smooth stand-in for the sum of class-wise IoUs of the
    exact score, every class counting alike whatever its area. ``candidates.py``
    turns it into an estimate of the exact score. int8, so the search runs as an
    integer matrix product; the rounding leaves measured recall unchanged
    (bench/RESULTS.md).
    """
    counts = cell_class_counts(small_maps).transpose(0, 2, 1).astype(np.float32)
    norms = np.linalg.norm(counts, axis=2, keepdims=True)
    blocks = counts / np.maximum(norms, 1.0)
    return np.rint(blocks * DESCRIPTOR_SCALE).astype(np.int8).reshape(len(counts), -1)
