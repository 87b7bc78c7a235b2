"""A small semantic segmenter for the 19 train classes: the downstream consumer of the shards.

Not a competitive model: a convolutional encoder-decoder with skip connections
(three levels, about 0.1 M parameters at ``width=16``) that trains in minutes on
a CPU, to show the intended use of the synthetic data and to measure layout
fidelity.
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
    """``(B, 3, H, W)`` images in [0, 1] -> ``(B, num_classes, H, W)`` logits.

    ``levels`` encoder levels, each at half the resolution of the one before (widths
    ``width`` x 1, 2, 4, 4, ...): more levels see more of the image (3 levels: about 30
    pixels; 5: the whole of a 64x128 frame). ``coordinates`` appends each pixel's
    normalised (row, column) to the input, so the model can learn where in the frame a
    class lies (sky above, road below) when colours say nothing. Input sides must be
    multiples of ``2 ** (levels - 1)``."""

    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 16, levels: int = 3,
                 coordinates: bool = False):
        super().__init__()
        if levels < 2:
            raise ValueError(f"levels must be at least 2, got {levels}")
        self.coordinates = coordinates
        channels = [width * min(2**i, 4) for i in range(levels)]
        inputs = [3 + 2 * coordinates, *channels[:-1]]
        for i in range(levels):  # names enc1.. / dec1.., as the three-level model always had
            self.add_module(f"enc{i + 1}", _block(inputs[i], channels[i], stride=1 if i == 0 else 2))
        for i in range(levels - 1):
            self.add_module(f"dec{i + 1}", _block(channels[i + 1] + channels[i], channels[i]))
        self.head = nn.Conv2d(width, num_classes, 1)
        self.levels = levels

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> "SmallSegmenter":
        """The model these weights were saved from (classes, width, levels and coordinate
        input read from the tensors), with the weights loaded."""
        first = state["enc1.0.weight"]
        model = cls(num_classes=state["head.weight"].shape[0], width=first.shape[0],
                    levels=sum(1 for key in state if key.startswith("enc") and key.endswith(".0.weight")),
                    coordinates=first.shape[1] == 5)
        model.load_state_dict(state)
        return model

    def describe(self) -> str:
        width = self.enc1[0].out_channels
        extra = f", levels={self.levels}" if self.levels != 3 else ""
        return f"SmallSegmenter(width={width}{extra}{', coordinates' if self.coordinates else ''})"

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The encoder's levels: full, 1/2, 1/4 ... resolution (``width`` x 1, 2, 4, ... channels)."""
        x = _with_coordinates(images) if self.coordinates else images
        levels = []
        for i in range(self.levels):
            x = getattr(self, f"enc{i + 1}")(x)
            levels.append(x)
        return tuple(levels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        levels = self.encode(images)
        x = levels[-1]
        for i in reversed(range(self.levels - 1)):
            skip = levels[i]
            x = getattr(self, f"dec{i + 1}")(torch.cat([F.interpolate(x, size=skip.shape[-2:]), skip], dim=1))
        return self.head(x)


def _with_coordinates(images: torch.Tensor) -> torch.Tensor:
    b, _, h, w = images.shape
    rows = torch.linspace(0, 1, h, device=images.device, dtype=images.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
    cols = torch.linspace(0, 1, w, device=images.device, dtype=images.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
    return torch.cat([images, rows, cols], dim=1)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over train IDs; ignore pixels (255) do not count."""
    return F.cross_entropy(logits, labels.long(), ignore_index=IGNORE_ID)


def images_to_tensor(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` (as the shard reader yields them) -> float ``(B, 3, H, W)``
    in [0, 1]."""
    return images.permute(0, 3, 1, 2).float() / 255.0
