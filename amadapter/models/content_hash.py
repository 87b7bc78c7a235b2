"""Content hashes for cache keys and provenance: of tensors and of model weights."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def _update(digest, tensor: torch.Tensor) -> None:
    t = tensor.detach().contiguous()
    digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
    # bytes through a uint8 view: works for every dtype, bfloat16 included; flattened first,
    # since a 0-dim tensor (BatchNorm's num_batches_tracked) has no byte view (same bytes)
    digest.update(t.cpu().reshape(-1).view(torch.uint8).numpy().tobytes())


def tensor_hash(*tensors: torch.Tensor) -> str:
    """sha256 over dtype, shape and bytes of each tensor."""
    digest = hashlib.sha256()
    for t in tensors:
        _update(digest, t)
    return digest.hexdigest()


def weights_hash(**modules: nn.Module) -> str:
    """sha256 over every named parameter and buffer of the given modules."""
    digest = hashlib.sha256()
    for module_name, module in sorted(modules.items()):
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(f"{module_name}.{name}".encode())
            _update(digest, tensor)
    return digest.hexdigest()


def weights_fingerprint(*modules: nn.Module) -> tuple:
    """Cheap token that changes when a parameter is replaced, converted or modified
    in place (optimiser steps and ``load_state_dict`` bump a tensor's version counter)."""
    return tuple(
        (id(t), t._version, t.dtype) for m in modules for t in list(m.parameters()) + list(m.buffers())
    )
