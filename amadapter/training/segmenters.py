"""The downstream segmenters ``jobs.train_segmenter`` trains: built, scored on a batch, saved.

``small``: the project's ``SmallSegmenter`` (saved as ``segmenter.safetensors``).
``segformer``: a transformers ``SegformerForSemanticSegmentation`` over the Cityscapes
train classes (``amadapter.models.segformer``), from a local checkpoint (``init``) or a
config (default: the MiT-B0 shape), saved as a transformers checkpoint directory with
its image processor's settings. ``amadapter.models.segmentation_models`` loads both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import save_file
from torch import nn

from amadapter.models.segformer import IMAGENET_MEAN, IMAGENET_STD, cityscapes_segformer, pixel_values
from amadapter.models.segmentation_models import PROJECT_WEIGHTS
from amadapter.models.segmenter import SmallSegmenter, images_to_tensor, segmentation_loss

ARCHS = ("small", "segformer")


def default_lr(arch: str, init: str | None = None) -> float:
    """AdamW rate: 2e-3 for the small segmenter; for SegFormer the paper's 6e-5 when
    fine-tuning from ``init``, 1e-3 from a random initialisation."""
    if arch == "small":
        return 2e-3
    return 6e-5 if init is not None else 1e-3


def build_segmenter(
    arch: str, init: str | None = None, config: Mapping[str, Any] | None = None
) -> nn.Module:
    """A segmenter of ``arch`` in train mode; ``init`` and ``config`` are SegFormer's only."""
    if arch == "small":
        if init is not None or config:
            raise ValueError("a checkpoint to start from and a config are for the segformer arch")
        return SmallSegmenter().train()
    if arch == "segformer":
        return cityscapes_segformer(init, config).train()
    raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")


def segmenter_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a batch: uint8 ``(B, H, W, 3)`` images, uint8 ``(B, H, W)`` train IDs,
    255 ignored (SegFormer upsamples its 1/4-resolution logits to the labels first)."""
    if isinstance(model, SmallSegmenter):
        return segmentation_loss(model(images_to_tensor(images)), labels)
    return model(pixel_values=pixel_values(images), labels=labels.long()).loss


def save_segmenter(model: nn.Module, out: str | Path) -> None:
    """``out/segmenter.safetensors``, or a transformers checkpoint directory in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(model, SmallSegmenter):
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / PROJECT_WEIGHTS))
        return
    from transformers import SegformerImageProcessorPil

    model.save_pretrained(out)
    # the inputs were normalised, never resized: users' AutoImageProcessor should do the same
    SegformerImageProcessorPil(
        do_resize=False, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD)
    ).save_pretrained(out)
