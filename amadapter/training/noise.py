"""Per-step and per-row randomness, and the regression target of the noise-prediction loss."""

from __future__ import annotations

import numpy as np
import torch


def step_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator that depends only on (seed, step), so a resumed run draws
    the same values as an uninterrupted one; for draws shared by a whole step (a crop)."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))


class RowRandom:
    """The randomness of some rows of a step's global batch: each row draws from its
    own generator seeded by (seed, step, row), so a row gets the same noise, timestep
    and dropout whichever process, micro-batch or resumed run computes it.

    Every draw returns one value (or tensor of ``shape``) per row, stacked: (rows, *shape)."""

    def __init__(self, seed: int, step: int, rows):
        self.seed, self.step, self.rows = int(seed), int(step), list(rows)
        self._generators = [torch.Generator().manual_seed(_row_seed(seed, step, row)) for row in self.rows]

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g) for g in self._generators])

    def rand(self, *shape: int) -> torch.Tensor:
        return torch.stack([torch.rand(shape, generator=g) for g in self._generators])

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        return torch.stack([torch.randint(high, shape, generator=g) for g in self._generators])

    def shared(self) -> torch.Generator:
        """A generator common to all rows of the step (``step_generator``)."""
        return step_generator(self.seed, self.step)


def _row_seed(seed: int, step: int, row: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(step), int(row)]).generate_state(1, np.uint64)[0])


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
