"""The structure encoder: a ControlNeXt-style conv net from one-hot label maps to
a feature map at the width of the UNet's first down block.

Input: ``(N, NUM_CLASSES + 1, H, W)`` one-hot label maps (``labels.one_hot``;
channel 19 = ignore) at image resolution. Output: ``(N, out_channels, H/8, W/8)``.
How the output joins the UNet (resize, cross-normalise, add) is in
``structure_guidance.py``. The encoder has no timestep input, so a label map is
encoded once per sampling call, not once per step.

Layers: a strided conv stem (/2), two stages of (residual block, stride-2 conv)
(/8 in all), a 1x1 projection. At the defaults (SD1.5 width 320) it has about
3.5 M parameters.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from torch.nn import functional as F

from amadapter.io.labels import IGNORE_ID, NUM_CLASSES


class _ResidualBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, plus a 1x1 skip when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (
            nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class StructureEncoder(ModelMixin, ConfigMixin):
    """Label map (one-hot) -> control features for the UNet's first down block.

    Args:
        in_channels: one-hot channels, ``NUM_CLASSES + 1`` (19 classes + ignore).
        stem_channels: width of the stride-2 stem.
        stage_channels: widths of the two residual+downsample stages.
        out_channels: the UNet's ``block_out_channels[0]`` (320 for SD1.5).
        norm_num_groups: GroupNorm groups (divides every stage width).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = NUM_CLASSES + 1,
        stem_channels: int = 64,
        stage_channels: tuple[int, ...] = (192, 320),
        out_channels: int = 320,
        norm_num_groups: int = 32,
    ):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(stem_channels, stem_channels, 3, stride=2, padding=1),
        )
        stages = []
        width = stem_channels
        for stage_width in stage_channels:
            stages.append(_ResidualBlock(width, stage_width, min(norm_num_groups, width)))
            stages.append(nn.Conv2d(stage_width, stage_width, 3, stride=2, padding=1))
            width = stage_width
        self.stages = nn.Sequential(*stages)
        self.proj = nn.Sequential(
            nn.GroupNorm(min(norm_num_groups, width), width),
            nn.SiLU(),
            nn.Conv2d(width, out_channels, 1),
        )

    def forward(self, label_one_hot: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W)`` one-hot -> ``(N, out_channels, H/8, W/8)``."""
        return self.proj(self.stages(self.stem(label_one_hot)))

    def encode_labels(self, train_ids: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``(N, H, W)`` uint8 train IDs (0..18, 255) -> control features.

        The same encoding as ``labels.one_hot`` (channel NUM_CLASSES = ignore), done
        with torch on the model's device so large batches need no host copies."""
        ids = torch.as_tensor(train_ids).to(device=self.device, dtype=torch.long)
        ids = torch.where(ids == IGNORE_ID, NUM_CLASSES, ids)
        hot = F.one_hot(ids, self.config.in_channels).permute(0, 3, 1, 2).to(self.dtype)
        return self(hot)

