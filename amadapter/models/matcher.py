"""The appearance-matching adapter phi: 4-D centre-pivot convolutions over
(query grid x exemplar grid) attention logits.

Input R = concat(A.detach(), C): ``heads + 1`` channels on a 4-D grid
``(hq, wq, hx, wx)``, where A are the target->exemplar logits of one
self-attention layer and C its categorical matching cost (``class_cost.py``).
Output: ``heads`` channels on the same grid, the correction phi(R).

Each layer is a centre-pivot 4-D convolution: the sum of a 1x1 convolution over
the query dims and a 3x3 convolution over the exemplar dims (HSNet's
``CenterPivotConv4d`` with kernel (1, 1, 3, 3); both branches carry a bias),
followed by GroupNorm (over channel groups and all four grid dims, per batch
row) and ReLU. Channels: ``heads + 1 -> 16 -> 32 -> 16 -> heads``.

With a 1x1 query kernel the query branch is a per-position channel mix, so both
branches run on the layout ``(rows * hq * wq, channels, hx, wx)``, folded into
one 3x3 convolution; no convolution mixes query positions (only GroupNorm's
statistics span them).

One encoder per block group (down, mid, up): the layers of a group share it.
Parameters per encoder at 8 heads: 13,248 (``encoder_parameter_count``).
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from torch.nn import functional as F

BLOCK_GROUPS = ("down", "mid", "up")


class CenterPivotConv4d(nn.Module):
    """1x1 conv over the query dims + 3x3 conv over the exemplar dims, summed."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.query_conv = nn.Conv2d(in_channels, out_channels, 1)
        self.exemplar_conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(rows * hq * wq, C_in, hx, wx) -> (rows * hq * wq, C_out, hx, wx)``.

        On this layout the 1x1 branch equals extra weight on the 3x3 kernel's centre
        tap, so both run as one convolution (same result, one pass over the tensor)."""
        weight = self.exemplar_conv.weight.clone()
        weight[:, :, 1, 1] += self.query_conv.weight[:, :, 0, 0]
        bias = self.exemplar_conv.bias + self.query_conv.bias
        return F.conv2d(x, weight.contiguous(memory_format=torch.channels_last), bias, padding=1)


def _group_norm_4d(x: torch.Tensor, rows: int, norm: nn.GroupNorm) -> torch.Tensor:
    """GroupNorm of ``(rows * Lq, C, hx, wx)`` (channels-last memory) with statistics
    per row over the channel group and all of (Lq, hx, wx), i.e. GroupNorm of the 4-D
    tensor (rows, C, hq, wq, hx, wx). The memory (rows, Lq * hx, wx, C) is already a
    channels-last (rows, C, Lq * hx, wx) image, so PyTorch's kernel runs on it as is."""
    n, c, hx, wx = x.shape
    image = x.permute(0, 2, 3, 1).reshape(rows, (n // rows) * hx, wx, c).permute(0, 3, 1, 2)
    normed = F.group_norm(image, norm.num_groups, norm.weight, norm.bias, norm.eps)
    return normed.permute(0, 2, 3, 1).reshape(n, hx, wx, c).permute(0, 3, 1, 2)


class MatchingEncoder(nn.Module):
    """phi for one block group: centre-pivot conv, GroupNorm, ReLU per layer."""

    def __init__(self, heads: int, channels: tuple[int, ...], groups: int):
        super().__init__()
        widths = (heads + 1, *channels, heads)
        self.convs = nn.ModuleList(CenterPivotConv4d(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(nn.GroupNorm(_groups_for(b, groups), b) for b in widths[1:])

    def forward(self, logits: torch.Tensor, cost: torch.Tensor, query_grid, exemplar_grid) -> torch.Tensor:
        """``logits`` (rows, heads, Lq, Lx), ``cost`` (rows, Lq, Lx) -> phi (rows, heads, Lq, Lx).

        ``query_grid`` = (hq, wq), ``exemplar_grid`` = (hx, wx), row-major token order."""
        rows, heads, lq, lx = logits.shape
        hx, wx = exemplar_grid
        if query_grid[0] * query_grid[1] != lq or hx * wx != lx:
            raise ValueError(f"grids {query_grid}, {exemplar_grid} do not hold {lq} x {lx} tokens")
        # channels-last layout (rows * Lq, hx, wx, C): small-channel convolutions run
        # several times faster in it than in NCHW
        r = torch.cat([logits.detach(), cost.unsqueeze(1).to(logits.dtype)], dim=1)
        x = r.permute(0, 2, 3, 1).reshape(rows * lq, hx, wx, heads + 1).permute(0, 3, 1, 2)
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(_group_norm_4d(conv(x), rows, norm), inplace=True)
        return x.permute(0, 2, 3, 1).reshape(rows, lq, lx, heads).permute(0, 3, 1, 2)


def _groups_for(channels: int, groups: int) -> int:
    while channels % groups:
        groups -= 1
    return groups


def encoder_parameter_count(heads: int, channels: tuple[int, ...] = (16, 32, 16)) -> int:
    """Parameters of one ``MatchingEncoder`` from the architecture alone: per layer
    two conv weights (1x1 and 3x3: 1 + 9 taps), two conv biases, GroupNorm scale and shift."""
    widths = (heads + 1, *channels, heads)
    return sum(a * b * (1 + 9) + 2 * b + 2 * b for a, b in zip(widths[:-1], widths[1:]))


class AppearanceMatchingAdapter(ModelMixin, ConfigMixin):
    """The stage-2 trainable part: one ``MatchingEncoder`` per block group.

    Args:
        heads: attention heads of the UNet's self-attention layers.
        channels: hidden widths of phi.
        norm_groups: GroupNorm groups (reduced to a divisor where needed).
        max_tokens: the adapter acts at self-attention layers with at most this many
            query tokens; larger layers use plain augmented attention (fused SDPA).
    """

    @register_to_config
    def __init__(
        self,
        heads: int = 8,
        channels: tuple[int, ...] = (16, 32, 16),
        norm_groups: int = 4,
        max_tokens: int = 2048,
    ):
        super().__init__()
        self.encoders = nn.ModuleDict(
            {group: MatchingEncoder(heads, tuple(channels), norm_groups) for group in BLOCK_GROUPS}
        )

    def forward(self, group: str, logits, cost, query_grid, exemplar_grid) -> torch.Tensor:
        """phi of block group ``group`` ("down", "mid" or "up"); see ``MatchingEncoder``."""
        return self.encoders[group](logits, cost, query_grid, exemplar_grid)
