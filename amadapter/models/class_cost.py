"""The categorical matching cost C and the nearest resize of label maps.

C[q, x] = 1 where query token q (target grid) and exemplar token x (exemplar
grid) carry the same train ID at that layer's resolution, else 0; positions
labelled ignore (255) match nothing. Both label maps are resized to their token
grid as 2-D images with nearest-neighbour sampling at pixel centres, so a region
stays where it is at every resolution and aspect ratio (the authors' code
resized along flattened token indices, which shifts rows; see the tests).
Tokens are in row-major order, as in the UNet's ``(h, w) -> h * w`` flattening.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from amadapter.io.labels import IGNORE_ID


def resize_labels_nearest(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, H, W)`` integer label maps -> ``(N, h, w)`` uint8, nearest at pixel centres.

    Uses PyTorch's "nearest-exact" (source index floor((i + 0.5) * H / h)), which
    keeps a map centred when the size ratio is not an integer."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels.to(torch.uint8)
    # float32 holds 0..255 exactly, so the round trip keeps every ID
    resized = F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest-exact")
    return resized[:, 0].to(torch.uint8)


def class_cost(
    query_labels: torch.Tensor,
    exemplar_labels: torch.Tensor,
    query_grid: tuple[int, int],
    exemplar_grid: tuple[int, int],
) -> torch.Tensor:
    """``(N, Hq, Wq)`` and ``(N, Hx, Wx)`` train-ID maps -> C ``(N, hq*wq, hx*wx)`` float32.

    Row n pairs query map n with exemplar map n."""
    q = resize_labels_nearest(query_labels, query_grid).flatten(1)
    x = resize_labels_nearest(exemplar_labels, exemplar_grid).flatten(1)
    same = q[:, :, None] == x[:, None, :]
    labelled = (q != IGNORE_ID)[:, :, None]
    return (same & labelled).float()
