"""Structure guidance on a stock ``diffusers.UNet2DConditionModel``.

What is added where (ControlNeXt's rule, with our label-map encoder):
``unet.down_blocks[0]`` returns ``(hidden, skip_samples)``. A forward hook on that
block replaces ``hidden`` (the block's output after its downsampler, the input of
``down_blocks[1]``) by

    hidden + scale * cross_normalise(resize(control), hidden)

where ``resize`` is adaptive average pooling to ``hidden``'s spatial size and
``cross_normalise`` gives the control, per batch row, the mean and standard
deviation of ``hidden`` over (channels, height, width). The skip samples stored
for the up path are left as they were, so the control reaches the decoder only
through the down path, as in ControlNeXt. Every operation is per batch row.

The hook exists only for the duration of one ``with structure_control(...)``
block, so a UNet outside such a block is the stock UNet.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from diffusers import UNet2DConditionModel
from torch.nn import functional as F


def cross_normalise(control: torch.Tensor, feature: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Give ``control`` (N, C, h, w) the per-row mean and std of ``feature`` (same shape).

    Statistics are taken in float32 so half-precision features do not overflow."""
    c = control.float()
    f = feature.float()
    c_mean, c_std = c.mean(dim=(1, 2, 3), keepdim=True), c.std(dim=(1, 2, 3), keepdim=True)
    f_mean, f_std = f.mean(dim=(1, 2, 3), keepdim=True), f.std(dim=(1, 2, 3), keepdim=True)
    return ((c - c_mean) / (c_std + eps) * f_std + f_mean).to(feature.dtype)


def add_control(hidden: torch.Tensor, control: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """``hidden + scale * cross_normalise(resize(control), hidden)``; ``scale`` may be
    a float or a per-row tensor (N,)."""
    if control.shape[0] != hidden.shape[0]:
        raise ValueError(f"control has {control.shape[0]} rows, the UNet batch {hidden.shape[0]}")
    resized = F.adaptive_avg_pool2d(control.to(hidden.dtype), hidden.shape[-2:])
    if isinstance(scale, torch.Tensor):
        scale = scale.to(hidden).view(-1, 1, 1, 1)
    return hidden + scale * cross_normalise(resized, hidden)


@contextmanager
def structure_control(
    unet: UNet2DConditionModel, control: torch.Tensor | None, scale: float | torch.Tensor = 1.0
) -> Iterator[None]:
    """Within the block, every ``unet(...)`` call adds ``control`` (one row per batch
    row) after the first down block. ``control=None`` leaves the UNet stock."""
    if control is None:
        yield
        return

    def hook(_module, _inputs, output):
        hidden, skip_samples = output
        return add_control(hidden, control, scale), skip_samples

    handle = unet.down_blocks[0].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def unet_with_control(
    unet: UNet2DConditionModel,
    sample: torch.Tensor,
    timestep: torch.Tensor | int,
    encoder_hidden_states: torch.Tensor,
    control: torch.Tensor | None,
    scale: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """One UNet forward with structure guidance; returns the model output (noise,
    v or sample prediction, per the scheduler's ``prediction_type``).

    This is the stage-1 training forward: ``control = structure_encoder(one_hot)``,
    loss = MSE(output, target of the scheduler's prediction type)."""
    with structure_control(unet, control, scale):
        return unet(sample, timestep, encoder_hidden_states=encoder_hidden_states).sample
