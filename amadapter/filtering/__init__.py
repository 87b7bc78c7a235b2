"""The quality filter for synthetic samples: a segmentation model (the project's own or a
transformers checkpoint, loaded by ``amadapter.models.segmentation_models``), per-pixel losses, per-class reference losses on real images,
and the rule that turns implausible pixels into ignore. Pure PyTorch, no Beam."""

from amadapter.filtering.pixel_filter import (
    DEFAULT_MARGIN,
    DEFAULT_MIN_KEPT,
    FilterOutcome,
    QualityFilter,
    filter_pixels,
)
from amadapter.filtering.pixel_losses import ReferenceLosses, measure_reference_losses, pixel_losses
from amadapter.models.segmentation_models import (
    SegmentationModel,
    SegmenterFormatError,
    load_segmentation_model,
)

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_MIN_KEPT",
    "FilterOutcome",
    "QualityFilter",
    "ReferenceLosses",
    "SegmentationModel",
    "SegmenterFormatError",
    "filter_pixels",
    "load_segmentation_model",
    "measure_reference_losses",
    "pixel_losses",
]
