"""Shared builders for the model tests: the tiny preset and hand-made label maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amadapter.pipelines.model_factory import build_pipeline
from bench.sampler import block_labels as synthetic_block_labels

# 32x64 images -> 16x32 latents (tiny VAE, f=2) -> self-attention at 8x16 = 128 tokens
HEIGHT, WIDTH = 32, 64


def tiny_pipeline(seed: int = 0):
    pipe = build_pipeline("tiny", seed=seed)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def block_labels(rng: np.random.Generator, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A label map of 8x8-pixel blocks with random classes (and some ignore)."""
    return synthetic_block_labels(rng, height, width, cell=8, ignore=True)


def photo(rng: np.random.Generator, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@pytest.fixture
def single_thread():
    """One intra-op thread per test: on this shared 2-core machine two spinning
    threads per process slow tiny models down by orders of magnitude."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
