"""Stored prompt embeddings for models that ship without a text encoder.

The bundled demo model has one fixed prompt, so it keeps two learned sequences,
the conditional one and the unconditional one (the "empty prompt" of
classifier-free guidance and of DDIM inversion), instead of a CLIP text encoder.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class PromptEmbeddings(ModelMixin, ConfigMixin):
    """Two learned prompt-embedding sequences of shape ``(1, seq_len, dim)``.

    Args:
        seq_len: tokens per sequence.
        dim: the UNet's ``cross_attention_dim``.
    """

    @register_to_config
    def __init__(self, seq_len: int = 4, dim: int = 64):
        super().__init__()
        self.cond = nn.Parameter(torch.randn(1, seq_len, dim) * 0.02)
        self.uncond = nn.Parameter(torch.randn(1, seq_len, dim) * 0.02)
