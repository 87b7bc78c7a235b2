"""Exemplars keep their geometry: crop to the output's aspect ratio before resizing.

An exemplar of another aspect ratio than the output (a 16:9 BDD100K photo for a 2:1
Cityscapes-sized output) would be squashed by a plain resize, stretching every car
and facade it lends. The largest window of the output's aspect is cut from it
instead, photo and label map alike, and only that window is resized.

Two rules for where the window sits (``bench/exemplar_crop.py`` measures both):

- ``centred_box``: the middle of the frame, a function of the exemplar alone, so
  one exemplar branch still serves every target that reads it;
- ``class_keeping_box``: the window showing the most of the target's classes,
  which depends on the target too.
"""

from __future__ import annotations

import numpy as np

from amadapter.io.labels import NUM_CLASSES

Box = tuple[int, int, int, int]  # top, left, height, width


def centred_box(height: int, width: int, aspect: float) -> Box:
    """The largest centred window of ``aspect`` (width / height) in a height x width frame."""
    if width >= height * aspect:
        w = max(1, min(width, round(height * aspect)))
        return 0, (width - w) // 2, height, w
    h = max(1, min(height, round(width / aspect)))
    return (height - h) // 2, 0, h, width


def class_keeping_box(labels: np.ndarray, aspect: float, target_classes: np.ndarray, steps: int = 16) -> Box:
    """The window of ``aspect`` that shows the most of ``target_classes`` (train IDs):
    most classes first, then most pixels of them; ties go to the window nearest the centre.
    ``steps`` + 1 positions are tried along the axis the crop shortens."""
    height, width = labels.shape
    top, left, h, w = centred_box(height, width, aspect)
    spare = width - w if w < width else height - h
    wanted = np.zeros(NUM_CLASSES + 1, bool)
    wanted[np.asarray(target_classes, np.int64)] = True
    best, best_rank = (top, left, h, w), None
    for offset in sorted({round(spare * i / steps) for i in range(steps + 1)}, key=lambda o: abs(o - spare / 2)):
        box = (0, offset, h, w) if w < width else (offset, 0, h, w)
        window = crop(labels, box)
        counts = np.bincount(np.minimum(window, NUM_CLASSES).ravel(), minlength=NUM_CLASSES + 1)
        rank = (int((wanted & (counts > 0)).sum()), int(counts[wanted].sum()))
        if best_rank is None or rank > best_rank:
            best, best_rank = box, rank
    return best


def crop(array: np.ndarray, box: Box) -> np.ndarray:
    """``array[top : top + height, left : left + width]`` (any trailing channels kept)."""
    top, left, h, w = box
    return array[top : top + h, left : left + w]
