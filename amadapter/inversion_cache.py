"""Cache of inverted exemplar latents, keyed by (exemplar content hash, model hash,
schedule), in memory (least recently used first out) and optionally in a
directory as one safetensors file per key. A hit does no VAE or UNet work.

Thread-safe: one pipeline serves several threads (Beam's multi-threaded workers,
a shared model's proxy), and they may need the same exemplar at once.
``get_or_compute`` lets the first caller of a key compute it while the others
wait for its result, instead of inverting the same exemplar twice."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file


def inversion_key(exemplar_hash: str, model_hash: str, schedule: str) -> str:
    """The cache key: sha256 of the three parts."""
    return hashlib.sha256(f"{exemplar_hash}|{model_hash}|{schedule}".encode()).hexdigest()


class InversionCache:
    """``get_or_compute(key, compute)`` -> latent tensor (CPU); ``get``/``put`` below it.

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
        self._lock = threading.Lock()
        self._computing: dict[str, threading.Event] = {}
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def get(self, key: str) -> torch.Tensor | None:
        with self._lock:
            latent = self._lookup(key)
            self.misses += latent is None
            return latent

    def put(self, key: str, latent: torch.Tensor) -> torch.Tensor:
        """Store ``latent`` (as a CPU copy, which is returned)."""
        latent = latent.detach().cpu().contiguous()
        with self._lock:
            self._remember(key, latent)
        if self.directory is not None:
            # write then rename, so a reader never sees a partial file
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            os.close(fd)
            try:
                save_file({"latent": latent}, tmp)
                os.replace(tmp, self._path(key))
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        return latent

    def get_or_compute(self, key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The cached latent of ``key``, or ``compute()`` stored under it. While one
        thread computes a key, other threads asking for it wait for that result;
        if the computation raises, the next waiter computes it itself."""
        while True:
            with self._lock:
                latent = self._lookup(key)
                if latent is not None:
                    return latent
                running = self._computing.get(key)
                if running is None:
                    self.misses += 1
                    done = self._computing[key] = threading.Event()
                    break
            running.wait()
        try:
            return self.put(key, compute())
        finally:
            with self._lock:
                del self._computing[key]
            done.set()

    def _lookup(self, key: str) -> torch.Tensor | None:
        """Memory, then directory; counts hits. Call with the lock held."""
        latent = self._memory.get(key)
        if latent is None and self.directory is not None and self._path(key).is_file():
            latent = load_file(self._path(key))["latent"]
            self._remember(key, latent)
        if latent is None:
            return None
        self._memory.move_to_end(key)
        self.hits += 1
        return latent

    def _remember(self, key: str, latent: torch.Tensor) -> None:
        self._memory[key] = latent
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_entries:
            self._memory.popitem(last=False)
