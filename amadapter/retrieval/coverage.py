"""A second exemplar for what the first lacks: per-target class coverage.

A target class that its exemplar does not show has no appearance source (on the
world's random pairs, 27% of a target's classes). ``cover_classes`` keeps the first
exemplar (chosen by layout as always) and adds, one at a time, the entry among the
best layout matches that shows the most target pixels whose class none of the chosen
ones shows; each target class then reads the first chosen exemplar that shows it, and
the first exemplar lends the rest (classes no chosen exemplar shows included, so every
pixel keeps an appearance source). Ties go to the better-ranked match, so the choice
depends only on the ranking and the target, never on batching or workers.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from amadapter.io.labels import NUM_CLASSES
from amadapter.retrieval.index import ExemplarMatch


def class_pixels(train_ids: np.ndarray) -> np.ndarray:
    """(NUM_CLASSES,) pixel counts of a train-ID map (255 = ignore is not counted)."""
    return np.bincount(train_ids[train_ids < NUM_CLASSES].ravel(), minlength=NUM_CLASSES)


def cover_classes(
    first: ExemplarMatch,
    ranked: Sequence[ExemplarMatch],
    target_pixels: np.ndarray,
    count: int,
) -> list[tuple[ExemplarMatch, tuple[int, ...] | None]]:
    """Up to ``count`` exemplars as (match, classes it lends); the first lends the rest
    (``None``). Stops early when no candidate in ``ranked`` adds a target pixel."""
    chosen: list[tuple[ExemplarMatch, tuple[int, ...] | None]] = [(first, None)]
    shown = np.zeros(NUM_CLASSES, bool)
    shown[list(first.classes)] = True
    used = {first.key}
    while len(chosen) < count:
        best, best_gain, best_classes = None, 0, ()
        for match in ranked:
            if match.key in used:
                continue
            new = [c for c in match.classes if not shown[c] and target_pixels[c] > 0]
            gain = int(target_pixels[new].sum()) if new else 0
            if gain > best_gain:
                best, best_gain, best_classes = match, gain, tuple(new)
        if best is None:
            break
        chosen.append((best, best_classes))
        shown[list(best_classes)] = True
        used.add(best.key)
    return chosen
