"""DDIM inversion of exemplar latents.

The exemplar is inverted with plain self-attention under the caller's prompt
embedding and structure guidance (the pipeline uses those it then denoises the
exemplar with), along the sampling schedule run backwards:
from the clean latent up to the noise level of the first sampling timestep, so
that the exemplar can be denoised in lockstep with the targets.

Each step follows diffusers' ``DDIMInverseScheduler``: the UNet is evaluated at
the next (noisier) timestep on the current latent; the prediction is turned into
(x0, eps) with the current level's alpha and moved to the next level.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel


def split_prediction(
    model_output: torch.Tensor, sample: torch.Tensor, alpha_prod: torch.Tensor, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, eps) from a model output at noise level ``alpha_prod``."""
    a, s = alpha_prod.sqrt(), (1 - alpha_prod).sqrt()
    if prediction_type == "epsilon":
        return (sample - s * model_output) / a, model_output
    if prediction_type == "v_prediction":
        return a * sample - s * model_output, a * model_output + s * sample
    raise ValueError(f"DDIM inversion supports epsilon and v_prediction, not {prediction_type!r}")


@torch.no_grad()
def ddim_invert(
    unet: UNet2DConditionModel,
    scheduler: DDIMScheduler,
    latents: torch.Tensor,
    embeddings: torch.Tensor,
) -> torch.Tensor:
    """Clean latents (N, C, h, w) -> latents at ``scheduler.timesteps[0]``.

    ``scheduler`` is the call's own copy, set to the sampling steps
    (``set_timesteps``); it is only read. ``embeddings`` is (N, L, D). The UNet
    may be inside a ``structure_control`` block; it runs without an attention
    plan (plain self-attention)."""
    alphas = scheduler.alphas_cumprod.to(latents.device)
    alpha_cur = torch.as_tensor(scheduler.final_alpha_cumprod, device=latents.device)
    x = latents
    for t in scheduler.timesteps.flip(0):
        out = unet(x, t, encoder_hidden_states=embeddings).sample
        x0, eps = split_prediction(out.float(), x.float(), alpha_cur.float(), scheduler.config.prediction_type)
        alpha_cur = alphas[t]
        x = (alpha_cur.sqrt() * x0 + (1 - alpha_cur).sqrt() * eps).to(latents.dtype)
    return x
