"""The categorical matching cost C.

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

from amadapter.io.labels import IGNORE_ID
from amadapter.io.resize import resize_labels_nearest


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
