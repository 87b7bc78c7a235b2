"""Per-step randomness and the regression target of the noise-prediction loss."""

from __future__ import annotations

import torch


def step_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator that depends only on (seed, step), so a resumed run draws
    the same noise and timesteps as an uninterrupted one."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))


def diffusion_target(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the UNet should predict for ``add_noise(latents, noise, timesteps)``,
    per the scheduler's ``prediction_type``."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    if kind == "sample":
        return latents
    raise ValueError(f"unsupported prediction_type {kind!r}")
