"""Load a segmentation model from a local path: uint8 images -> logits over the 19 train IDs.

The one loader of the project (the quality filter, the evaluation and its features,
training use it). Two formats, told apart by what the path holds:

- **the project's segmenter** (``amadapter.models.segmenter.SmallSegmenter``): a
  ``.safetensors`` file (``bench.world_segmenter`` caches one) or a directory holding
  ``segmenter.safetensors`` (what ``jobs.train_segmenter`` writes); width, depth and class
  count are read from the weights;
- **a transformers semantic-segmentation checkpoint** (``save_pretrained``: ``config.json``
  + weights), loaded with ``AutoModelForSemanticSegmentation`` (SegFormer, BEiT, DPT,
  UperNet, ...). Images are rescaled and normalised as its ``preprocessor_config.json``
  says (ImageNet's mean and std without one, as SegFormer's processor), fed at their own
  size, and the logits (1/4 resolution for SegFormer) are upsampled bilinearly to the
  images' size, as the processors' ``post_process_semantic_segmentation`` does. Labels
  named ``LABEL_i`` are taken as train ID i; labels naming the Cityscapes classes in
  another order are reordered to train IDs; any other names are an error.

Two call styles: ``model(images)`` takes a uint8 ``(B, H, W, 3)`` tensor and returns
float logits ``(B, 19, H, W)`` on the model's device; ``model.logits(images)`` takes a
numpy array and returns float32 logits on the CPU. Neither records gradients, and the
model holds no per-call state, so threads may share one. Every path that is not a
segmenter of these classes is a ``SegmenterFormatError``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

from amadapter.io.labels import CLASS_NAMES, NUM_CLASSES
from amadapter.models.content_hash import weights_hash
from amadapter.models.segformer import IMAGENET_MEAN, IMAGENET_STD, pixel_values
from amadapter.models.segmenter import SmallSegmenter, images_to_tensor

PROJECT_WEIGHTS = "segmenter.safetensors"  # the project segmenter's file inside a directory
TRANSFORMERS_CONFIG = "config.json"
PREPROCESSOR_CONFIG = "preprocessor_config.json"
PROJECT, TRANSFORMERS = "project", "transformers"


class SegmenterFormatError(ValueError):
    """A path that holds neither segmenter format, or a model of another class space."""


@dataclass(frozen=True)
class Normalisation:
    """uint8 pixels -> the model's input: ``(x * scale - mean) / std`` per channel (scale
    None: x / 255)."""

    scale: float | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return pixel_values(images, self.mean, self.std, self.scale)


@dataclass(frozen=True)
class SegmentationModel:
    """A loaded segmenter: ``kind`` is ``"project"`` or ``"transformers"``, ``description``
    its class (and width), ``weights_hash`` the sha256 of its parameters and buffers."""

    module: nn.Module
    kind: str
    description: str
    path: str
    weights_hash: str
    normalisation: Normalisation = Normalisation()
    channels: tuple[int, ...] | None = None  # model channel of each train ID; None: the same

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(next(self.module.parameters()).device)
        if self.kind == PROJECT:
            return self.module(images_to_tensor(images))
        logits = self.module(pixel_values=self.normalisation(images)).logits
        logits = F.interpolate(logits, size=images.shape[1:3], mode="bilinear", align_corners=False)
        return logits if self.channels is None else logits[:, list(self.channels)]

    def logits(self, images: np.ndarray) -> torch.Tensor:
        """``self(images)`` for a numpy batch, as float32 on the CPU."""
        return self(torch.from_numpy(np.array(images, dtype=np.uint8))).float().cpu()


def load_segmentation_model(path: str | Path, device: str | torch.device = "cpu") -> SegmentationModel:
    """The segmenter at ``path`` (see the module docstring), in eval mode on ``device``;
    ``SegmenterFormatError`` for anything else."""
    path = Path(path)
    if path.is_dir() and (path / TRANSFORMERS_CONFIG).is_file():
        loaded = _transformers_model(path)
    elif path.is_file() and path.suffix == ".safetensors":
        loaded = _project_model(path)
    elif (path / PROJECT_WEIGHTS).is_file():
        loaded = _project_model(path / PROJECT_WEIGHTS)
    else:
        raise SegmenterFormatError(
            f"{path}: not a segmentation model: expected a transformers checkpoint directory "
            f"({TRANSFORMERS_CONFIG}), a directory with {PROJECT_WEIGHTS} (as jobs.train_segmenter "
            "writes it), or a .safetensors file"
        )
    module = loaded.module.to(device).eval().requires_grad_(False)
    return SegmentationModel(
        module, loaded.kind, loaded.description, str(path), weights_hash(model=module),
        loaded.normalisation, loaded.channels,
    )  # fmt: skip


def _project_model(weights: Path) -> SegmentationModel:
    state = load_file(str(weights))
    if "enc1.0.weight" not in state or "head.weight" not in state:
        raise SegmenterFormatError(f"{weights}: not the project's segmenter (SmallSegmenter) weights")
    _check_class_count(state["head.weight"].shape[0], weights)
    module = SmallSegmenter.from_state_dict(state)
    return SegmentationModel(module, PROJECT, module.describe(), str(weights), "")


def _transformers_model(directory: Path) -> SegmentationModel:
    from transformers import AutoModelForSemanticSegmentation  # heavy import, only when needed

    try:
        module = AutoModelForSemanticSegmentation.from_pretrained(str(directory))
    except ValueError as error:  # a config of a class without a semantic-segmentation head
        raise SegmenterFormatError(f"{directory}: {error}") from None
    config = module.config
    _check_class_count(config.num_labels, directory)
    names = [str(config.id2label[i]).strip().lower() for i in range(config.num_labels)]
    channels = None
    if names != [f"label_{i}" for i in range(config.num_labels)] and names != list(CLASS_NAMES):
        if sorted(names) != sorted(CLASS_NAMES):
            raise SegmenterFormatError(
                f"{directory}: its labels {names} are not the Cityscapes train classes {list(CLASS_NAMES)}"
            )
        channels = tuple(names.index(name) for name in CLASS_NAMES)
    return SegmentationModel(module, TRANSFORMERS, type(module).__name__, str(directory), "",
                             _normalisation(directory), channels)  # fmt: skip


def _normalisation(directory: Path) -> Normalisation:
    """What the directory's image processor config says, if it has one."""
    path = directory / PREPROCESSOR_CONFIG
    config = json.loads(path.read_text()) if path.is_file() else {}
    scale = config.get("rescale_factor") if config.get("do_rescale", True) else 1.0
    if not config.get("do_normalize", True):
        return Normalisation(scale, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    return Normalisation(
        scale, tuple(config.get("image_mean", IMAGENET_MEAN)), tuple(config.get("image_std", IMAGENET_STD))
    )


def _check_class_count(count: int, path: Path) -> None:
    if count != NUM_CLASSES:
        raise SegmenterFormatError(
            f"{path}: the model predicts {count} classes; the {NUM_CLASSES} Cityscapes train IDs are needed"
        )
