"""Cache of inverted exemplar latents, keyed by (exemplar content hash, model hash,
schedule), in memory (least recently used first out) and optionally in a
directory as one safetensors file per key. A hit does no VAE or UNet work."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def inversion_key(exemplar_hash: str, model_hash: str, schedule: str) -> str:
    """The cache key: sha256 of the three parts."""
    return hashlib.sha256(f"{exemplar_hash}|{model_hash}|{schedule}".encode()).hexdigest()


class InversionCache:
    """``get(key)`` -> latent tensor (CPU) or None; ``put(key, latent)``.

    Args:
        directory: where to keep latents across processes (created if missing);
            None keeps them in memory only.
        max_entries: in-memory capacity.
    """

    def __init__(self, directory: str | os.PathLike | None = None, max_entries: int = 512):
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.max_entries = max_entries
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def get(self, key: str) -> torch.Tensor | None:
        latent = self._memory.get(key)
        if latent is None and self.directory is not None and self._path(key).is_file():
            latent = load_file(self._path(key))["latent"]
            self._remember(key, latent)
        if latent is None:
            self.misses += 1
            return None
        self._memory.move_to_end(key)
        self.hits += 1
        return latent

    def put(self, key: str, latent: torch.Tensor) -> None:
        latent = latent.detach().cpu().contiguous()
        self._remember(key, latent)
        if self.directory is not None:
            # write then rename, so a reader never sees a partial file
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            os.close(fd)
            save_file({"latent": latent}, tmp)
            os.replace(tmp, self._path(key))

    def _remember(self, key: str, latent: torch.Tensor) -> None:
        self._memory[key] = latent
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_entries:
            self._memory.popitem(last=False)
