"""One UNet forward over rows with roles (plain / read an exemplar row), with
structure guidance, and the stage-2 training forward built on it.

Stage 1 (structure encoder + UNet) trains with ``structure_guidance.unet_with_control``.
Stage 2 (adapter only) trains with ``predict_with_exemplars``.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel

from amadapter.models.attention_processors import AugmentedAttention
from amadapter.models.matcher import AppearanceMatchingAdapter
from amadapter.pipelines.structure_guidance import unet_with_control


def unet_rows(
    unet: UNet2DConditionModel,
    latents: torch.Tensor,
    timestep: torch.Tensor | int,
    encoder_hidden_states: torch.Tensor,
    control: torch.Tensor | None,
    exemplar_row: torch.Tensor,
    mode: str,
    labels: torch.Tensor | None = None,
    adapter: AppearanceMatchingAdapter | None = None,
    max_tokens: int | None = None,
    beta: float = 5.0,
    control_scale: float = 1.0,
) -> torch.Tensor:
    """``unet(latents, ...)`` where row i attends to row ``exemplar_row[i]`` too
    (-1: plain self-attention), in ``mode`` (see ``attention_processors``).

    ``control`` (one row per latent row, or None) is the structure encoder's output;
    ``labels`` (N, H, W) train IDs of every row, for C."""
    plan = AugmentedAttention.of(unet).plan(
        exemplar_row, mode, tuple(latents.shape[-2:]), labels, adapter, max_tokens, beta
    )
    return unet_with_control(
        unet, latents, timestep, encoder_hidden_states, control, control_scale, plan.attention_kwargs()
    )


def predict_with_exemplars(
    unet: UNet2DConditionModel,
    adapter: AppearanceMatchingAdapter | None,
    target_latents: torch.Tensor,
    exemplar_latents: torch.Tensor,
    timesteps: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    target_control: torch.Tensor,
    exemplar_control: torch.Tensor,
    target_labels: torch.Tensor,
    exemplar_labels: torch.Tensor,
    mode: str = "am_adapter",
    max_tokens: int | None = None,
    beta: float = 5.0,
) -> torch.Tensor:
    """The stage-2 training forward: target i attends to [itself; exemplar i].

    One UNet forward over rows [targets (B); exemplars (B)]: the exemplar rows use
    plain self-attention, the target rows augmented attention corrected by
    ``adapter`` (mode ``am_adapter``). Returns the target rows' prediction (B, ...),
    for the usual loss against the scheduler's target. ``timesteps`` (B,) is used
    for both a target and its exemplar; ``encoder_hidden_states`` (B, L, D) too.
    Freeze the UNet (``requires_grad_(False)``) and gradients reach only the adapter:
    phi sees A detached, and A itself depends only on UNet weights. Mode ``none``: the
    targets read nothing (their prediction is the plain forward's), for comparisons.
    """
    b = target_latents.shape[0]
    reads = torch.full((b,), -1) if mode == "none" else torch.arange(b, 2 * b)
    exemplar_row = torch.cat([reads, torch.full((b,), -1)])
    out = unet_rows(
        unet,
        torch.cat([target_latents, exemplar_latents]),
        torch.cat([timesteps, timesteps]),
        torch.cat([encoder_hidden_states, encoder_hidden_states]),
        torch.cat([target_control, exemplar_control]),
        exemplar_row,
        mode,
        torch.cat([target_labels, exemplar_labels]),
        adapter,
        max_tokens,
        beta,
    )
    return out[:b]
