"""CLIP-I: cosine similarity of CLIP image embeddings, between each output and its exemplar
(the paper's appearance metric; higher is closer).

The model is a transformers CLIP from a local directory: a full ``CLIPModel``
checkpoint (its text tower is not loaded) or a vision-only
``CLIPVisionModelWithProjection`` one; the embedding is the projected image embedding
``CLIPModel.get_image_features`` gives. Images are preprocessed with the directory's
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
        from transformers import CLIPImageProcessorPil, CLIPVisionModelWithProjection

        directory = Path(directory)
        self.path = str(directory)
        self.model = CLIPVisionModelWithProjection.from_pretrained(str(directory))
        self.model = self.model.to(device).eval().requires_grad_(False)
        if (directory / "preprocessor_config.json").is_file():
            self.processor = CLIPImageProcessorPil.from_pretrained(str(directory))
        else:
            side = self.model.config.image_size
            self.processor = CLIPImageProcessorPil(
                size={"shortest_edge": side}, crop_size={"height": side, "width": side}
            )

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        inputs = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        device = next(self.model.parameters()).device
        embeds = self.model(pixel_values=inputs.to(device)).image_embeds.double()
        return torch.nn.functional.normalize(embeds, dim=1).cpu().numpy()


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``(N, E)`` arrays."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)
