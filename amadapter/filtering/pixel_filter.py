"""The quality filter (FreeMask's rule): synthetic pixels a segmenter finds implausible
become ignore.

A labelled pixel of class c is dropped (set to 255) when its loss exceeds
``margin`` x the reference loss of c on real images (``pixel_losses``). A class
the reference images never show has no reference: its pixels are kept (nothing
says what a plausible loss for it is). The kept share is the share of the
sample's labelled pixels that survive (1.0 for a sample with none).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from amadapter.filtering.pixel_losses import ReferenceLosses, pixel_losses
from amadapter.models.segmentation_models import SegmentationModel
from amadapter.io.labels import IGNORE_ID

DEFAULT_MARGIN = 1.25  # FreeMask's
DEFAULT_MIN_KEPT = 0.5


@dataclasses.dataclass(frozen=True, eq=False)
class FilterOutcome:
    """``label``: the filtered train IDs (dropped pixels 255); ``kept_share`` of the
    labelled pixels; ``dropped``: pixels set to ignore."""

    label: np.ndarray
    kept_share: float
    dropped: int


def filter_pixels(
    losses: np.ndarray, label: np.ndarray, reference: ReferenceLosses, margin: float
) -> FilterOutcome:
    """Apply the rule of the module docstring to one sample's ``losses`` and ``label``."""
    limits = np.array(
        [np.inf if loss is None else margin * loss for loss in reference.losses] + [np.inf],
        np.float64,
    )  # the last entry serves ignore pixels, which are never dropped
    classes = np.where(label == IGNORE_ID, len(reference.losses), label).astype(np.int64)
    drop = losses.astype(np.float64) > limits[classes]
    labelled = int((label != IGNORE_ID).sum())
    dropped = int(drop.sum())
    filtered = np.where(drop, np.uint8(IGNORE_ID), label).astype(np.uint8)
    kept_share = (labelled - dropped) / labelled if labelled else 1.0
    return FilterOutcome(filtered, kept_share, dropped)


class QualityFilter:
    """A segmentation model, its reference losses and the margin: ``apply(image, label)``.
    Holds no per-call state, so one object may serve several threads."""

    def __init__(self, model: SegmentationModel, reference: ReferenceLosses, margin: float):
        if margin <= 0:
            raise ValueError(f"margin must be positive, got {margin}")
        self.model, self.reference, self.margin = model, reference, margin

    def apply(self, image: np.ndarray, label: np.ndarray) -> FilterOutcome:
        losses = pixel_losses(self.model, image, label)
        return filter_pixels(losses, label, self.reference, self.margin)
