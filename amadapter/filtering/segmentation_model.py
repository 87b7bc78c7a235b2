"""A segmentation model from a local directory, as per-pixel logits over the 19 train IDs.

Two formats load through ``load_segmentation_model``:

- the project's own segmenter (``amadapter.models.segmenter.SmallSegmenter``): a
  directory holding ``segmenter.safetensors``, as ``jobs.train_segmenter --out``
  writes it; the width and class count are read from the weights' shapes;
- a transformers semantic-segmentation checkpoint (``save_pretrained``:
  ``config.json`` + weights), loaded with ``AutoModelForSemanticSegmentation``
  (``SegformerForSemanticSegmentation``, ``BeitForSemanticSegmentation``,
  ``DPTForSemanticSegmentation``, ``UperNetForSemanticSegmentation``, ...). Images
  are rescaled and normalised with the mean and std of the directory's
  ``preprocessor_config.json`` (ImageNet's without one, as SegFormer's processor),
  fed at their own size (no processor resize), and the logits are upsampled
  bilinearly to the image size, as the processors' ``post_process_semantic_segmentation``
  does. When the checkpoint's ``id2label`` names the Cityscapes classes, its
  channels are reordered to train IDs; otherwise channel i is taken as train ID i.

A loaded model holds no per-call state (its modules are in eval mode and run
under ``torch.inference_mode``), so one object may serve several threads.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from amadapter.io.labels import CLASS_NAMES, NUM_CLASSES
from amadapter.models.segmenter import SmallSegmenter, images_to_tensor

PROJECT_WEIGHTS = "segmenter.safetensors"  # jobs.train_segmenter's file name
TRANSFORMERS_CONFIG = "config.json"
PREPROCESSOR_CONFIG = "preprocessor_config.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # SegformerImageProcessor's defaults
IMAGENET_STD = (0.229, 0.224, 0.225)


class SegmenterFormatError(ValueError):
    """A directory that holds neither segmenter format, or a model of another class space."""


class SegmentationModel:
    """``logits(images)``: uint8 ``(B, H, W, 3)`` RGB -> float32 ``(B, 19, H, W)`` logits,
    channel c = train ID c, on the CPU. ``kind`` names the format and class."""

    def __init__(self, kind: str, module: torch.nn.Module, device: str, prepare, channels=None):
        self.kind = kind
        self._module = module.eval().to(device)
        self._device = device
        self._prepare = prepare  # uint8 (B, H, W, 3) tensor -> the module's input tensor
        self._channels = channels  # model channel of each train ID, or None: the same order

    def logits(self, images: np.ndarray) -> torch.Tensor:
        pixels = torch.from_numpy(np.array(images, dtype=np.uint8))  # a writable copy
        with torch.inference_mode():
            inputs = self._prepare(pixels).to(self._device)
            output = self._module(inputs)
            logits = getattr(output, "logits", output).float()
            if logits.shape[-2:] != pixels.shape[1:3]:
                logits = F.interpolate(
                    logits, size=tuple(pixels.shape[1:3]), mode="bilinear", align_corners=False
                )
            if self._channels is not None:
                logits = logits[:, self._channels]
        return logits.cpu()


def load_segmentation_model(directory: str, device: str = "cpu") -> SegmentationModel:
    """The model in ``directory`` (see the module docstring); ``SegmenterFormatError`` when
    it holds neither format or predicts another number of classes than the 19 train IDs."""
    if os.path.isfile(os.path.join(directory, PROJECT_WEIGHTS)):
        return _project_segmenter(directory, device)
    if os.path.isfile(os.path.join(directory, TRANSFORMERS_CONFIG)):
        return _transformers_segmenter(directory, device)
    raise SegmenterFormatError(
        f"{directory}: not a segmenter directory (expected {PROJECT_WEIGHTS}, as "
        f"jobs.train_segmenter writes it, or a transformers checkpoint with {TRANSFORMERS_CONFIG})"
    )


def _project_segmenter(directory: str, device: str) -> SegmentationModel:
    state = load_file(os.path.join(directory, PROJECT_WEIGHTS))
    _check_classes(directory, state["head.weight"].shape[0])
    model = SmallSegmenter.from_state_dict(state)
    return SegmentationModel(model.describe(), model, device, images_to_tensor)


def _transformers_segmenter(directory: str, device: str) -> SegmentationModel:
    from transformers import AutoModelForSemanticSegmentation  # heavy import, only when used

    try:
        model = AutoModelForSemanticSegmentation.from_pretrained(directory)
    except ValueError as error:  # a config of a class without a semantic-segmentation head
        raise SegmenterFormatError(f"{directory}: {error}") from None
    config = model.config
    _check_classes(directory, config.num_labels)
    mean, std, scale = _normalisation(directory)
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)

    def prepare(images: torch.Tensor) -> torch.Tensor:
        return (images.permute(0, 3, 1, 2).float() * scale - mean_t) / std_t

    names = [str(config.id2label[i]).strip().lower() for i in range(config.num_labels)]
    channels = None
    if sorted(names) == sorted(CLASS_NAMES) and names != list(CLASS_NAMES):
        channels = [names.index(name) for name in CLASS_NAMES]
    return SegmentationModel(type(model).__name__, model, device, prepare, channels)


def _normalisation(directory: str) -> tuple[tuple, tuple, float]:
    """(mean, std, rescale factor) from the directory's image processor config, if any."""
    path = os.path.join(directory, PREPROCESSOR_CONFIG)
    config = {}
    if os.path.isfile(path):
        with open(path) as stream:
            config = json.load(stream)
    scale = config.get("rescale_factor", 1 / 255) if config.get("do_rescale", True) else 1.0
    if not config.get("do_normalize", True):
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), scale
    return (
        tuple(config.get("image_mean", IMAGENET_MEAN)),
        tuple(config.get("image_std", IMAGENET_STD)),
        scale,
    )


def _check_classes(directory: str, classes: int) -> None:
    if classes != NUM_CLASSES:
        raise SegmenterFormatError(
            f"{directory}: the model predicts {classes} classes; the filter needs the "
            f"{NUM_CLASSES} Cityscapes train IDs"
        )
