"""A small semantic segmenter for the 19 train classes: the downstream consumer of the shards.

Not a competitive model: a three-level convolutional encoder-decoder with skip
connections (about 0.1 M parameters at ``width=16``) that trains in minutes on
a CPU, to show the intended use of the synthetic data and to measure layout
fidelity. Input sides must be multiples of 4.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from amadapter.io.labels import IGNORE_ID, NUM_CLASSES


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    groups = 8 if cout % 8 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1),
        nn.GroupNorm(groups, cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.GroupNorm(groups, cout),
        nn.ReLU(inplace=True),
    )


class SmallSegmenter(nn.Module):
    """``(B, 3, H, W)`` images in [0, 1] -> ``(B, num_classes, H, W)`` logits."""

    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 16):
        super().__init__()
        self.enc1 = _block(3, width)
        self.enc2 = _block(width, 2 * width, stride=2)
        self.enc3 = _block(2 * width, 4 * width, stride=2)
        self.dec2 = _block(4 * width + 2 * width, 2 * width)
        self.dec1 = _block(2 * width + width, width)
        self.head = nn.Conv2d(width, num_classes, 1)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The encoder's three levels: full, 1/2 and 1/4 resolution (``width`` x 1, 2, 4 channels)."""
        e1 = self.enc1(images)
        e2 = self.enc2(e1)
        return e1, e2, self.enc3(e2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        e1, e2, e3 = self.encode(images)
        d2 = self.dec2(torch.cat([F.interpolate(e3, size=e2.shape[-2:]), e2], dim=1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, size=e1.shape[-2:]), e1], dim=1))
        return self.head(d1)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over train IDs; ignore pixels (255) do not count."""
    return F.cross_entropy(logits, labels.long(), ignore_index=IGNORE_ID)


def images_to_tensor(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` (as the shard reader yields them) -> float ``(B, 3, H, W)``
    in [0, 1]."""
    return images.permute(0, 3, 1, 2).float() / 255.0
