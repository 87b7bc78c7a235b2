"""Prompt conditioning for training: the model's prompt, its empty prompt, and
per-row dropout to the empty prompt (so classifier-free guidance works).

Two kinds of model: one with stored prompt embeddings (``PromptEmbeddings``,
the demo model; they train in stage 1 with the UNet) and one with a CLIP text
encoder (Stable Diffusion 1.5; the pipeline's prompt is encoded once, frozen).
"""

from __future__ import annotations

import torch
from torch import nn


class PromptConditioning:
    def __init__(self, stored: nn.Module | None = None, cond: torch.Tensor | None = None,
                 uncond: torch.Tensor | None = None, frozen_modules: tuple[nn.Module, ...] = ()):
        self.stored, self._cond, self._uncond = stored, cond, uncond
        self.frozen_modules = frozen_modules

    @property
    def trainable(self) -> nn.Module | None:
        """The stored embeddings (trained with the UNet in stage 1); None with a text encoder."""
        return self.stored

    @classmethod
    def from_pipeline(cls, pipe, device) -> "PromptConditioning":
        if pipe.text_encoder is None:
            return cls(stored=pipe.prompt_embeds)
        with torch.no_grad():
            cond, uncond = pipe.encode_prompt(None, device, pipe.unet.dtype)
        return cls(cond=cond, uncond=uncond, frozen_modules=(pipe.text_encoder,))

    def batch(self, drop: torch.Tensor) -> torch.Tensor:
        """(B, L, D): the prompt for rows where ``drop`` is False, the empty prompt elsewhere."""
        if self.stored is not None:
            cond, uncond = self.stored.cond, self.stored.uncond
        else:
            cond, uncond = self._cond, self._uncond
        return torch.where(drop.view(-1, 1, 1), uncond, cond)
