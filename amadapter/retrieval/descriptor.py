"""Layout summaries of a label map used by exemplar retrieval.

Everything retrieval compares is derived from one small map: the label map
nearest-downsampled to ``MAP_SHAPE`` (nearest, so every value stays a real train
ID and no boundary pixel is invented). Maps of any size and aspect ratio land on
the same grid, so a 2:1 Cityscapes frame and a 16:9 BDD100K frame compare in
normalised image coordinates.

Summaries serve the search before the exact score (``score.py``) decides:

- ``cell_counts``: per class, its sample count in each of the 4x8 cells of
  ``BOUND_GRID`` (8x8 samples each, so a count fits a uint8). The sum over
  cells of min(target count, exemplar count) bounds the class's intersection
  from above, so it gives an upper bound of the exact score
  (``score.layout_score_bounds``).
- ``coarse_counts``: the same on the 2x4 cells of ``COARSE_GRID`` (2x2 bound
  cells each), halved and rounded up to fit a uint8: a looser bound, from a
  quarter of the bytes.
- ``coarse_descriptors``: per class, where it lies on the 2x4 cells, scaled to
  unit length, as int8. The coarse scan (``candidates.py``) ranks the whole
  pool with it.
"""

from __future__ import annotations

import numpy as np

from amadapter.io.labels import IGNORE_ID, NUM_CLASSES, check_train_ids

MAP_SHAPE = (32, 64)  # rows, cols of the small map the exact score reads
BOUND_GRID = (4, 8)  # cells of cell_counts: 8x8 samples of the small map each
BOUND_CELLS = BOUND_GRID[0] * BOUND_GRID[1]
COARSE_GRID = (2, 4)  # cells of the coarse descriptor: 2x2 bound cells each
COARSE_CELLS = COARSE_GRID[0] * COARSE_GRID[1]
COARSE_DIM = NUM_CLASSES * COARSE_CELLS  # 152
COARSE_COUNT_SCALE = 2  # coarse_counts hold halved counts
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


def cell_counts(small_maps: np.ndarray) -> np.ndarray:
    """(N, *MAP_SHAPE) small maps -> (N, NUM_CLASSES, BOUND_CELLS) uint8 sample counts per
    class and cell of ``BOUND_GRID`` (row-major cells); ignore samples are not counted."""
    small_maps = np.asarray(small_maps, dtype=np.uint8)
    n = small_maps.shape[0]
    grid_h, grid_w = BOUND_GRID
    cell_h, cell_w = MAP_SHAPE[0] // grid_h, MAP_SHAPE[1] // grid_w
    # (N, gy, cell_h, gx, cell_w) -> (N * cells, samples): each row is one cell.
    cells = small_maps.reshape(n, grid_h, cell_h, grid_w, cell_w).transpose(0, 1, 3, 2, 4)
    cells = cells.reshape(n * BOUND_CELLS, cell_h * cell_w)
    width = NUM_CLASSES + 1
    codes = cells + (width * np.arange(n * BOUND_CELLS, dtype=np.int64))[:, None]
    counts = np.bincount(codes.ravel(), minlength=n * BOUND_CELLS * width)
    counts = counts.reshape(n, BOUND_CELLS, width)[:, :, :NUM_CLASSES]
    return np.ascontiguousarray(counts.transpose(0, 2, 1)).astype(np.uint8)


def _coarse_sums(counts: np.ndarray) -> np.ndarray:
    """(N, C, BOUND_CELLS) -> (N, C, COARSE_CELLS) int32: sums of 2x2 bound cells."""
    n = len(counts)
    fine = np.asarray(counts, dtype=np.int32).reshape(n, NUM_CLASSES, *BOUND_GRID)
    coarse = fine.reshape(n, NUM_CLASSES, COARSE_GRID[0], 2, COARSE_GRID[1], 2).sum((3, 5))
    return coarse.reshape(n, NUM_CLASSES, COARSE_CELLS)


def coarse_counts(counts: np.ndarray) -> np.ndarray:
    """(N, NUM_CLASSES, BOUND_CELLS) ``cell_counts`` -> (N, NUM_CLASSES, COARSE_CELLS) uint8:
    ceil(count / 2) per coarse cell (a coarse cell holds up to 256 samples). Twice the
    min of two halved counts is never below the min of the counts, so bounds from them
    stay upper bounds (``COARSE_COUNT_SCALE``)."""
    return ((_coarse_sums(counts) + 1) // 2).astype(np.uint8)


def coarse_descriptors(counts: np.ndarray) -> np.ndarray:
    """(N, NUM_CLASSES, BOUND_CELLS) ``cell_counts`` -> (N, COARSE_DIM) int8 descriptors.

    One block of COARSE_CELLS values per class: its sample count per coarse cell,
    scaled to unit length, times ``DESCRIPTOR_SCALE``; a class the map does not
    show has a zero block. The inner product of two descriptors is then 127^2
    times the sum, over the classes both maps show, of the cosine between their
    placements, every class counting alike whatever its area.
    """
    coarse = _coarse_sums(counts).astype(np.float32)
    blocks = coarse / np.maximum(np.linalg.norm(coarse, axis=2, keepdims=True), 1.0)
    return np.rint(blocks * DESCRIPTOR_SCALE).astype(np.int8).reshape(len(counts), COARSE_DIM)
