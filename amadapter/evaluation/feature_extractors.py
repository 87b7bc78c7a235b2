"""Feature spaces for FID and KID, loaded from a local file or directory.

The figure is only comparable with figures in the same feature space, so every
extractor carries a ``name`` saying which it is (``eval.json`` records it):

- **Inception v3 (FID's standard)** as TorchScript: the ``inception-2015-12-05.pt``
  file clean-fid and StyleGAN3's metrics load (the 2015 TensorFlow graph traced to
  TorchScript), called as ``model(images, return_features=True)`` on float NCHW in
  [0, 255] and resizing to 299x299 itself; 2048 pool3 features. It loads with
  ``torch.jit.load`` alone. pytorch-fid's ``pt_inception-2015-12-05-*.pth`` and
  torch-fidelity's weights file are state dicts for an architecture those packages
  build from torchvision, which this project does not depend on: they are refused
  with a message naming the TorchScript file.
- **A transformers vision model directory** (``config.json``): CLIP's projected image
  embedding; otherwise the model's ``pooler_output``, or its last hidden state
  averaged over positions (a SegFormer: the encoder's last stage). Preprocessed with the
  directory's ``preprocessor_config.json``, or ImageNet normalisation at the input size.
- **The project's segmenter** (a ``.safetensors`` file or a directory with
  ``segmenter.safetensors``, as ``amadapter.models.segmentation_models`` loads it): its
  encoder's 1/4-resolution features averaged over positions (4 x width values). The
  worked example in the README computes FID on the procedural world in the world
  segmenter's features this way.

``extractor(images)``: uint8 ``(B, H, W, 3)`` array -> ``(B, D)`` float64 features.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from amadapter.models.segformer import IMAGENET_MEAN, IMAGENET_STD, pixel_values
from amadapter.models.segmentation_models import PROJECT_WEIGHTS, load_segmentation_model
from amadapter.models.segmenter import images_to_tensor

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".jit", ".torchscript")
CLIP_MODEL_TYPES = ("clip", "clip_vision_model")


@dataclass(frozen=True)
class FeatureExtractor:
    name: str  # which feature space: recorded beside every FID / KID figure
    encode: Callable[[torch.Tensor], torch.Tensor]  # uint8 (B, H, W, 3) -> (B, D)

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.encode(torch.from_numpy(np.ascontiguousarray(images))).double().cpu().numpy()


def load_feature_extractor(path: str | Path, device: str | torch.device = "cpu") -> FeatureExtractor:
    """The feature space at ``path`` (see the module docstring); raises ``ValueError`` or
    ``FileNotFoundError`` naming the path when it holds none of them."""
    path = Path(path)
    if path.is_file() and path.suffix in TORCHSCRIPT_SUFFIXES:
        return _inception_torchscript(path, device)
    if path.is_dir() and (path / "config.json").is_file():
        return _transformers_features(path, device)
    if path.suffix == ".safetensors" or (path / PROJECT_WEIGHTS).is_file():
        return _segmenter_features(path, device)
    raise FileNotFoundError(
        f"{path}: no feature extractor: give the TorchScript Inception file (inception-2015-12-05.pt), "
        f"a transformers model directory, or the project's segmenter"
    )


def _inception_torchscript(path: Path, device) -> FeatureExtractor:
    try:
        model = torch.jit.load(str(path), map_location=device).eval()
    except RuntimeError as error:
        raise ValueError(
            f"{path}: not a TorchScript module ({error.__class__.__name__}); state-dict weights "
            f"such as pytorch-fid's pt_inception-2015-12-05-*.pth need torchvision's Inception "
            f"architecture, which this project does not use: give the TorchScript "
            f"inception-2015-12-05.pt (clean-fid, StyleGAN3 metrics) instead"
        ) from None

    def encode(images: torch.Tensor) -> torch.Tensor:
        x = images.to(device).permute(0, 3, 1, 2).float()  # [0, 255]: the model rescales itself
        return model(x, return_features=True)

    return FeatureExtractor(f"inception-v3 torchscript pool3 ({path.name})", encode)


def _transformers_features(directory: Path, device) -> FeatureExtractor:
    config = json.loads((directory / "config.json").read_text())
    if config.get("model_type") in CLIP_MODEL_TYPES:
        from amadapter.evaluation.clip_similarity import ClipImageEmbedder

        embedder = ClipImageEmbedder(directory, device)
        return FeatureExtractor(
            f"transformers clip image embedding ({directory.name})",
            lambda images: torch.from_numpy(embedder(images.numpy())),
        )
    from transformers import AutoImageProcessor, AutoModel

    model = AutoModel.from_pretrained(str(directory)).to(device).eval().requires_grad_(False)
    processor = None
    if (directory / "preprocessor_config.json").is_file():
        processor = AutoImageProcessor.from_pretrained(str(directory))

    def encode(images: torch.Tensor) -> torch.Tensor:
        if processor is not None:
            inputs = processor(images=list(images.numpy()), return_tensors="pt")["pixel_values"]
        else:
            inputs = pixel_values(images, IMAGENET_MEAN, IMAGENET_STD)
        output = model(pixel_values=inputs.to(device))
        pooled = getattr(output, "pooler_output", None)
        if pooled is not None:
            return pooled.flatten(1)
        hidden = output.last_hidden_state  # (B, C, h, w) for conv-like models, (B, L, C) for tokens
        return hidden.mean((2, 3)) if hidden.ndim == 4 else hidden.mean(1)

    model_type = config.get("model_type", "model")
    return FeatureExtractor(f"transformers {model_type} pooled features ({directory.name})", encode)


def _segmenter_features(path: Path, device) -> FeatureExtractor:
    segmenter = load_segmentation_model(path, device)
    width = segmenter.module.enc1[0].out_channels

    def encode(images: torch.Tensor) -> torch.Tensor:
        x = images_to_tensor(images.to(device))
        return segmenter.module.encode(x)[2].mean((2, 3))

    return FeatureExtractor(
        f"project segmenter encoder, {4 * width}-d pooled 1/4-resolution features "
        f"(weights sha256 {segmenter.weights_hash[:12]}; not Inception: not comparable with "
        f"published FIDs)",
        encode,
    )
