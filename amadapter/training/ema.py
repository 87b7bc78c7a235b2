"""Exponential moving average of the trained weights.

``shadow = d * shadow + (1 - d) * weight`` after every optimizer step, with the
warm-up ``d = min(decay, (1 + t) / (10 + t))`` at update t (diffusers' EMAModel
does the same), so early averages are not dominated by the random start. The
averages are float32 whatever the weights' dtype; only trainable parameters are
averaged (buffers and frozen weights are not trained).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class EMA:
    def __init__(self, modules: dict[str, nn.Module], decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay, self.updates = decay, 0
        self.modules = modules
        self.shadow = {
            name: {key: p.detach().float().clone() for key, p in module.named_parameters() if p.requires_grad}
            for name, module in modules.items()
        }

    @torch.no_grad()
    def update(self) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, module in self.modules.items():
            shadow = self.shadow[name]
            for key, p in module.named_parameters():
                if key in shadow:
                    shadow[key].mul_(d).add_(p.detach().float(), alpha=1 - d)
        self.updates += 1

    @torch.no_grad()
    def copy_to_weights(self) -> None:
        """Put the averages into the modules' weights (the model that is saved)."""
        for name, module in self.modules.items():
            for key, p in module.named_parameters():
                if key in self.shadow[name]:
                    p.copy_(self.shadow[name][key])

    @contextmanager
    def swapped_in(self):
        """The averages in the weights for the duration (validation), the trained weights after."""
        trained = {name: {k: p.detach().clone() for k, p in m.named_parameters() if k in self.shadow[name]}
                   for name, m in self.modules.items()}
        self.copy_to_weights()
        try:
            yield
        finally:
            with torch.no_grad():
                for name, module in self.modules.items():
                    for key, p in module.named_parameters():
                        if key in trained[name]:
                            p.copy_(trained[name][key])

    def state(self, name: str) -> dict[str, torch.Tensor]:
        return self.shadow[name]

    def load(self, name: str, tensors: dict[str, torch.Tensor], updates: int) -> None:
        missing = set(self.shadow[name]) - set(tensors)
        if missing:
            raise ValueError(f"EMA state of {name} lacks {sorted(missing)[:3]}")
        self.shadow[name] = {k: tensors[k].float().to(self.shadow[name][k].device) for k in self.shadow[name]}
        self.updates = updates
