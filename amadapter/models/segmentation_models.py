"""Load a segmentation model from a local path as one callable: uint8 images -> per-pixel logits.

Two formats, told apart by what the path holds:

- **the project's segmenter** (``amadapter.models.segmenter.SmallSegmenter``): a
  ``.safetensors`` file (``bench.world_segmenter`` caches one) or a directory
  holding ``segmenter.safetensors`` (what ``jobs.train_segmenter`` writes); width
  and class count are read from the weights;
- **a transformers segmentation checkpoint**: a directory with ``config.json``
  (``SegformerForSemanticSegmentation`` or any other class
  ``AutoModelForSemanticSegmentation`` knows), whose labels must be the 19
  Cityscapes train classes in train-ID order. Inputs are normalised with the
  mean and std of its ``preprocessor_config.json`` (ImageNet's when it has none);
  its logits (1/4 resolution for SegFormer) are upsampled bilinearly to the input.

``model(images)``: uint8 ``(B, H, W, 3)`` tensor -> float ``(B, 19, H, W)`` logits at
the images' (= the labels') resolution, without gradients. The model holds no
per-call state, so threads may share one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

from amadapter.io.labels import CLASS_NAMES, NUM_CLASSES
from amadapter.models.segformer import IMAGENET_MEAN, IMAGENET_STD, pixel_values
from amadapter.models.segmenter import SmallSegmenter, images_to_tensor
from amadapter.models.content_hash import weights_hash

PROJECT_WEIGHTS = "segmenter.safetensors"  # the project segmenter's file inside a directory
PROJECT, TRANSFORMERS = "project", "transformers"


@dataclass(frozen=True)
class SegmentationModel:
    """A loaded segmenter; ``kind`` is ``"project"`` or ``"transformers"``, ``weights_hash``
    the sha256 of its parameters and buffers (for provenance)."""

    module: nn.Module
    kind: str
    path: str
    weights_hash: str
    mean: tuple[float, float, float] = IMAGENET_MEAN  # input normalisation (transformers only)
    std: tuple[float, float, float] = IMAGENET_STD

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(next(self.module.parameters()).device)
        if self.kind == PROJECT:
            return self.module(images_to_tensor(images))
        logits = self.module(pixel_values=pixel_values(images, self.mean, self.std)).logits
        return F.interpolate(logits, size=images.shape[1:3], mode="bilinear", align_corners=False)


def load_segmentation_model(path: str | Path, device: str | torch.device = "cpu") -> SegmentationModel:
    """The segmenter at ``path`` (see the module docstring), in eval mode on ``device``.

    Raises ``FileNotFoundError`` for a path that holds neither format and ``ValueError``
    for a model whose classes are not the 19 Cityscapes train classes."""
    path = Path(path)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if path.is_dir() and (path / "config.json").is_file():
        kind, (module, mean, std) = TRANSFORMERS, _transformers_model(path)
    elif path.is_file() and path.suffix == ".safetensors":
        kind, module = PROJECT, _project_model(path)
    elif (path / PROJECT_WEIGHTS).is_file():
        kind, module = PROJECT, _project_model(path / PROJECT_WEIGHTS)
    else:
        raise FileNotFoundError(
            f"{path}: not a segmentation model: expected a transformers checkpoint directory "
            f"(config.json), a directory with {PROJECT_WEIGHTS}, or a .safetensors file"
        )
    module = module.to(device).eval().requires_grad_(False)
    return SegmentationModel(module, kind, str(path), weights_hash(model=module), mean, std)


def _project_model(weights: Path) -> SmallSegmenter:
    state = load_file(str(weights))
    if "enc1.0.weight" not in state or "head.weight" not in state:
        raise FileNotFoundError(f"{weights}: not the project's segmenter (SmallSegmenter) weights")
    _check_class_count(state["head.weight"].shape[0], weights)
    return SmallSegmenter.from_state_dict(state)


def _transformers_model(directory: Path):
    from transformers import AutoModelForSemanticSegmentation  # heavy import, only when needed

    module = AutoModelForSemanticSegmentation.from_pretrained(str(directory))
    config = module.config
    _check_class_count(config.num_labels, directory)
    names = [config.id2label[i] for i in range(config.num_labels)]
    generic = [f"LABEL_{i}" for i in range(config.num_labels)]  # a config that names no class
    if names != generic and [n.lower() for n in names] != list(CLASS_NAMES):
        raise ValueError(
            f"{directory}: its labels {names} are not the Cityscapes train classes "
            f"{list(CLASS_NAMES)} in train-ID order"
        )
    processor = directory / "preprocessor_config.json"
    settings = json.loads(processor.read_text()) if processor.is_file() else {}
    mean = tuple(settings.get("image_mean", IMAGENET_MEAN))
    std = tuple(settings.get("image_std", IMAGENET_STD))
    return module, mean, std


def _check_class_count(count: int, path: Path) -> None:
    if count != NUM_CLASSES:
        raise ValueError(
            f"{path}: the model predicts {count} classes; the 19 Cityscapes train classes are needed"
        )
