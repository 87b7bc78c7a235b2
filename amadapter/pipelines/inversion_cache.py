"""Cache of inverted exemplar latents, keyed by (exemplar content hash, model hash,
schedule), in memory (least recently used first out) and optionally in a
directory as one safetensors file per key. A hit does no VAE or UNet work.

Thread-safe: one pipeline serves several threads (Beam's multi-threaded workers,
a shared model's proxy), and they may need the same exemplar at once.
``get_or_compute_many`` lets the first caller of a key compute it while the others
wait for its result, instead of inverting the same exemplar twice."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors.torch import load_file, save_file


def inversion_key(exemplar_hash: str, model_hash: str, schedule: str) -> str:
    """The cache key: sha256 of the three parts."""
    return hashlib.sha256(f"{exemplar_hash}|{model_hash}|{schedule}".encode()).hexdigest()


class InversionCache:
    """``get_or_compute[_many]`` -> latent tensors (CPU); ``get``/``put`` below them.

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
        """The cached latent of ``key``, or ``compute()`` stored under it."""
        return self.get_or_compute_many([key], lambda missing: [compute()])[0]

    def get_or_compute_many(
        self, keys: Sequence[str], compute: Callable[[list[int]], Sequence[torch.Tensor]]
    ) -> list[torch.Tensor]:
        """The latents of ``keys`` (distinct), computing the missing ones in one
        ``compute(indices)`` call that returns their latents in that order.

        A key another thread is computing is not computed twice: this call waits for
        that result. If a computation raises, its keys are released and the next
        caller that needs them computes them itself."""
        if len(set(keys)) != len(keys):
            raise ValueError("get_or_compute_many takes distinct keys")
        found: dict[int, torch.Tensor] = {}
        while len(found) < len(keys):
            claimed, others = [], []
            with self._lock:
                for i, key in enumerate(keys):
                    if i in found:
                        continue
                    latent = self._lookup(key)
                    if latent is not None:
                        found[i] = latent
                    elif key in self._computing:
                        others.append(self._computing[key])
                    else:
                        self._computing[key] = threading.Event()
                        claimed.append(i)
                self.misses += len(claimed)
            if claimed:
                try:
                    for i, latent in zip(claimed, compute(claimed), strict=True):
                        found[i] = self.put(keys[i], latent)
                finally:
                    with self._lock:
                        done = [self._computing.pop(keys[i]) for i in claimed]
                    for event in done:
                        event.set()
            elif others:
                others[0].wait()
        return [found[i] for i in range(len(keys))]

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
