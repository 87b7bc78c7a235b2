"""CLIP-I: cosine similarity of CLIP image embeddings, between each output and its exemplar
(the paper's appearance metric; higher is closer).

The model is a transformers CLIP from a local directory: a full ``CLIPModel``
checkpoint (loaded whole: loading its vision half as ``CLIPVisionModelWithProjection``
would re-initialise the projection at random whenever the vision config does not repeat
``projection_dim``) or a vision-only ``CLIPVisionModelWithProjection`` one; the embedding
is the projected image embedding. Images are preprocessed with the directory's
``preprocessor_config.json`` (CLIP's own resize, centre crop and normalisation, PIL
backend: no torchvision), or CLIP's defaults at the model's input size when it has none.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class ClipImageEmbedder:
    """``embedder(images)``: uint8 ``(B, H, W, 3)`` arrays -> ``(B, E)`` unit-length float64
    embeddings. Holds no per-call state."""

    def __init__(self, directory: str | Path, device: str | torch.device = "cpu"):
        from transformers import AutoConfig, CLIPImageProcessorPil, CLIPModel, CLIPVisionModelWithProjection

        directory = Path(directory)
        self.path = str(directory)
        config = AutoConfig.from_pretrained(str(directory))
        if config.model_type == "clip":
            model, vision = CLIPModel.from_pretrained(str(directory)), config.vision_config
        elif config.model_type == "clip_vision_model":
            model, vision = CLIPVisionModelWithProjection.from_pretrained(str(directory)), config
        else:
            raise ValueError(f"{directory}: a {config.model_type!r} model, not a transformers CLIP")
        self.model = model.to(device).eval().requires_grad_(False)
        self.full_clip = config.model_type == "clip"
        if (directory / "preprocessor_config.json").is_file():
            self.processor = CLIPImageProcessorPil.from_pretrained(str(directory))
        else:
            side = vision.image_size
            self.processor = CLIPImageProcessorPil(
                size={"shortest_edge": side}, crop_size={"height": side, "width": side}
            )

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        inputs = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        device = next(self.model.parameters()).device
        inputs = inputs.to(device)
        if self.full_clip:  # CLIPModel: the pooled output of get_image_features is projected
            embeds = self.model.get_image_features(pixel_values=inputs).pooler_output
        else:
            embeds = self.model(pixel_values=inputs).image_embeds
        embeds = embeds.double()
        return torch.nn.functional.normalize(embeds, dim=1).cpu().numpy()


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``(N, E)`` arrays."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)
