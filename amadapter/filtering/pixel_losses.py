"""Per-pixel cross-entropy of a segmenter against a label map, and its per-class mean on
real images (the reference the quality filter compares synthetic pixels to).

Images go through the model one at a time: a pixel's loss then never depends on
which other images shared its batch, so the same image and labels give the same
losses wherever they are computed. Sums are accumulated in float64 in the order
the frames are given, and each class mean is rounded to 6 significant digits:
what is recorded (the job's fingerprint, its ``_filter`` file) is exactly what
the filter uses.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import numpy as np
import torch
from torch.nn import functional as F

from amadapter.models.segmentation_models import SegmentationModel
from amadapter.io.labels import CLASS_NAMES, IGNORE_ID, NUM_CLASSES


def pixel_losses(model: SegmentationModel, image: np.ndarray, label: np.ndarray) -> np.ndarray:
    """``(H, W)`` float32 cross-entropy of ``model`` on ``image`` (H, W, 3) uint8 against
    ``label`` (H, W) uint8 train IDs; 0 on ignore pixels (255)."""
    if image.shape[:2] != label.shape:
        raise ValueError(f"image {image.shape[:2]} and label {label.shape} differ in size")
    logits = model.logits(image[None])
    target = torch.from_numpy(label.astype(np.int64))[None]
    losses = F.cross_entropy(logits, target, ignore_index=IGNORE_ID, reduction="none")
    return losses[0].numpy()


@dataclasses.dataclass(frozen=True)
class ReferenceLosses:
    """Per train ID: the mean per-pixel loss over that class's pixels of ``images`` real
    frames (``losses``; None for a class they do not show) and the pixel count."""

    losses: tuple[float | None, ...]
    pixels: tuple[int, ...]
    images: int

    def to_json(self) -> dict:
        return {
            "images": self.images,
            "classes": {
                name: {"loss": loss, "pixels": pixels}
                for name, loss, pixels in zip(CLASS_NAMES, self.losses, self.pixels)
            },
        }

    @classmethod
    def from_json(cls, data: dict) -> "ReferenceLosses":
        classes = [data["classes"][name] for name in CLASS_NAMES]
        return cls(
            losses=tuple(c["loss"] for c in classes),
            pixels=tuple(int(c["pixels"]) for c in classes),
            images=int(data["images"]),
        )


def measure_reference_losses(
    model: SegmentationModel, frames: Iterable[tuple[np.ndarray, np.ndarray]]
) -> ReferenceLosses:
    """Mean loss per class over ``frames`` of (photo (H, W, 3) uint8, train IDs (H, W))."""
    sums = np.zeros(NUM_CLASSES, np.float64)
    counts = np.zeros(NUM_CLASSES, np.int64)
    images = 0
    for photo, label in frames:
        losses = pixel_losses(model, photo, label)
        labelled = label != IGNORE_ID
        classes = label[labelled].astype(np.int64)
        weights = losses[labelled].astype(np.float64)
        sums += np.bincount(classes, weights=weights, minlength=NUM_CLASSES)
        counts += np.bincount(classes, minlength=NUM_CLASSES)
        images += 1
    means = tuple(
        float(f"{s / n:.6g}") if n else None for s, n in zip(sums.tolist(), counts.tolist())
    )
    return ReferenceLosses(losses=means, pixels=tuple(int(n) for n in counts), images=images)
