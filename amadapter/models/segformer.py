"""A transformers SegFormer over the project's class space: the segmenter teams actually train.

``cityscapes_segformer`` builds ``SegformerForSemanticSegmentation`` with the 19
Cityscapes train classes as ``id2label`` (names from ``amadapter.io.labels``, so
a checkpoint saved from it reads as a Cityscapes model anywhere) and 255 as the
loss's ignore index, either from a local checkpoint directory (``init``: e.g. a
downloaded ``nvidia/mit-b0`` encoder or a Cityscapes-finetuned SegFormer) or,
without one, randomly initialised from a config (transformers' default
``SegformerConfig`` is the MiT-B0 shape, 3.7 M parameters; ``config`` overrides
its fields, e.g. a tiny one in tests).

``pixel_values`` turns the shard reader's uint8 images into the normalised
float input SegFormer (and most transformers vision models) expect.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from transformers import SegformerConfig, SegformerForSemanticSegmentation

from amadapter.io.labels import CLASS_NAMES, IGNORE_ID, NUM_CLASSES

# transformers' image processors normalise SegFormer inputs with ImageNet's statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def cityscapes_label_fields() -> dict[str, Any]:
    """Config fields naming the 19 train classes and the ignore index."""
    return {
        "num_labels": NUM_CLASSES,
        "id2label": dict(enumerate(CLASS_NAMES)),
        "label2id": {name: i for i, name in enumerate(CLASS_NAMES)},
        "semantic_loss_ignore_index": IGNORE_ID,
    }


def cityscapes_segformer(
    init: str | None = None, config: Mapping[str, Any] | None = None
) -> SegformerForSemanticSegmentation:
    """A SegFormer with the Cityscapes train classes; from ``init`` (a local checkpoint
    directory, its decode head replaced when its labels differ) or from ``config``."""
    if init is not None:
        return SegformerForSemanticSegmentation.from_pretrained(
            init, **cityscapes_label_fields(), ignore_mismatched_sizes=True, **(config or {})
        )
    return SegformerForSemanticSegmentation(
        SegformerConfig(**{**dict(config or {}), **cityscapes_label_fields()})
    )


def pixel_values(
    images: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    scale: float | None = None,
) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` -> float ``(B, 3, H, W)``, scaled to [0, 1] (or times a
    processor's ``rescale_factor``) and normalised."""
    x = images.permute(0, 3, 1, 2).float()
    x = x / 255.0 if scale is None else x * scale
    def channels(values):
        return torch.tensor(values, device=x.device).view(1, 3, 1, 1)

    return (x - channels(mean)) / channels(std)
