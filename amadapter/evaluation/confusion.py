"""Confusion matrices over the 19 train classes and the IoU figures read from them.

Rows are target classes, columns predicted classes; target pixels marked ignore (255) do
not count. mIoU averages over the classes the targets show (a class that is only
predicted has no IoU of its own: its false positives lower the IoU of the classes they
cover), pixels pooled over all images added to the matrix.
"""

from __future__ import annotations

import numpy as np

from amadapter.io.labels import IGNORE_ID, NUM_CLASSES


def confusion_matrix(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``(NUM_CLASSES, NUM_CLASSES)`` int64 pixel counts of same-shape train-ID maps."""
    valid = targets != IGNORE_ID
    t = targets[valid].astype(np.int64)
    p = predictions[valid].astype(np.int64)
    counts = np.bincount(t * NUM_CLASSES + p, minlength=NUM_CLASSES**2)
    return counts.reshape(NUM_CLASSES, NUM_CLASSES)


def class_iou(confusion: np.ndarray) -> np.ndarray:
    """``(NUM_CLASSES,)`` IoU per class; NaN for the classes the targets do not show."""
    hits = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - hits
    present = confusion.sum(1) > 0
    return np.where(present, hits / np.maximum(union, 1), np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean of ``class_iou`` over the classes the targets show (NaN when they show none)."""
    iou = class_iou(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
