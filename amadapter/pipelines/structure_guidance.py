"""Structure guidance on a stock ``diffusers.UNet2DConditionModel``.

What is added where (ControlNeXt's rule, with our label-map encoder):
``unet.down_blocks[0]`` returns ``(hidden, skip_samples)``; ``hidden`` (the
block's output after its downsampler, the input of ``down_blocks[1]``) becomes

    hidden + scale * cross_normalise(resize(control), hidden)

where ``resize`` is adaptive average pooling to ``hidden``'s spatial size and
``cross_normalise`` gives the control, per batch row, the mean and standard
deviation of ``hidden`` over (channels, height, width). The skip samples stored
for the up path are left as they were, so the control reaches the decoder only
through the down path, as in ControlNeXt. Every operation is per batch row.

Per-call state. The UNet has no argument for this addition, and its first down
block may have no cross-attention (so ``cross_attention_kwargs`` never reach
it). The control of a call therefore travels in a ``contextvars.ContextVar``
set by ``with structure_control(unet, control)`` in the calling thread and
reset when the block exits; a forward hook installed once per UNet
(``install_structure_guidance``) reads it. Threads start with their own
context, so concurrent callers of one shared UNet never see each other's
control, and the hook holds no state of its own. With no control in the
context the UNet is the stock UNet.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, NamedTuple

import torch
from diffusers import UNet2DConditionModel
from torch import nn
from torch.nn import functional as F


class _CallControl(NamedTuple):
    block: nn.Module  # the first down block of the UNet this control is for
    control: torch.Tensor
    scale: float | torch.Tensor


_CALL_CONTROL: ContextVar[_CallControl | None] = ContextVar("structure_control", default=None)
_INSTALL_LOCK = threading.Lock()  # two threads installing at once must not add the hook twice


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


def _add_call_control(block: nn.Module, _inputs, output):
    """Forward hook of ``down_blocks[0]``: add the calling context's control, if it is
    meant for this UNet."""
    call = _CALL_CONTROL.get()
    if call is None or call.block is not block:
        return output
    hidden, skip_samples = output
    return add_control(hidden, call.control, call.scale), skip_samples


def install_structure_guidance(unet: UNet2DConditionModel) -> None:
    """Install the context-reading hook on ``unet`` once (idempotent, thread-safe)."""
    block = unet.down_blocks[0]
    with _INSTALL_LOCK:
        if _add_call_control not in block._forward_hooks.values():
            block.register_forward_hook(_add_call_control)


@contextmanager
def structure_control(
    unet: UNet2DConditionModel, control: torch.Tensor | None, scale: float | torch.Tensor = 1.0
) -> Iterator[None]:
    """Within the block, every ``unet(...)`` call made by this thread (this context)
    adds ``control`` (one row per batch row) after the first down block.
    ``control=None`` leaves the UNet stock."""
    install_structure_guidance(unet)
    token = _CALL_CONTROL.set(None if control is None else _CallControl(unet.down_blocks[0], control, scale))
    try:
        yield
    finally:
        _CALL_CONTROL.reset(token)


def unet_with_control(
    unet: UNet2DConditionModel,
    sample: torch.Tensor,
    timestep: torch.Tensor | int,
    encoder_hidden_states: torch.Tensor,
    control: torch.Tensor | None,
    scale: float | torch.Tensor = 1.0,
    cross_attention_kwargs: dict | None = None,
) -> torch.Tensor:
    """One UNet forward with structure guidance; returns the model output (noise,
    v or sample prediction, per the scheduler's ``prediction_type``).

    This is the stage-1 training forward: ``control = structure_encoder(one_hot)``,
    loss = MSE(output, target of the scheduler's prediction type)."""
    with structure_control(unet, control, scale):
        return unet(
            sample, timestep, encoder_hidden_states=encoder_hidden_states,
            cross_attention_kwargs=cross_attention_kwargs,
        ).sample
