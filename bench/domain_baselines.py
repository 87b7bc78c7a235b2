"""What a team would use instead of synthesis: photometric jitter, and training-free domain
adaptation of its labelled photos towards the unlabelled domain (albumentations' ``FDA``:
a swap of the low Fourier amplitudes; ``HistogramMatching``: per-channel histograms),
with the unlabelled photos as references.

A ``Baseline`` is a picklable image transform for
``amadapter.training.segmenter_training.RealFrames``: each DataLoader process builds its
albumentations pipeline once and loads the reference photos once; every call reseeds
the pipeline from the frame's generator, so a run repeats exactly.
"""

from __future__ import annotations

import dataclasses
import functools

import albumentations as A
import numpy as np
from PIL import Image

BASELINES = ("jitter", "fda", "histogram")


@dataclasses.dataclass(frozen=True)
class Baseline:
    """``kind`` (one of ``BASELINES``) at ``strength``: jitter's brightness, contrast and
    saturation range (hue half of it), FDA's largest beta, or histogram matching's
    smallest blend ratio (1: the reference's histogram exactly). ``references``: paths of
    domain-B photos (FDA and histogram matching)."""

    kind: str
    strength: float
    references: tuple[str, ...] = ()

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        compose = _compose(self.kind, self.strength)
        compose.set_random_seed(int(rng.integers(2**31)))
        data = {"image": image}
        if self.kind != "jitter":
            data[compose.transforms[0].metadata_key] = _references(self.references)
        return compose(**data)["image"]

    def describe(self) -> str:
        return f"{self.kind} {self.strength:g}"


@functools.lru_cache(maxsize=8)
def _compose(kind: str, strength: float) -> A.Compose:
    if kind == "jitter":
        transform = A.ColorJitter(brightness=strength, contrast=strength, saturation=strength,
                                  hue=min(strength / 2, 0.5), p=1.0)  # fmt: skip
    elif kind == "fda":
        transform = A.FDA(beta_limit=(0.0, strength), p=1.0)
    elif kind == "histogram":
        transform = A.HistogramMatching(blend_ratio=(strength, 1.0), p=1.0)
    else:
        raise ValueError(f"unknown baseline {kind!r}; choose one of {BASELINES}")
    return A.Compose([transform])


@functools.lru_cache(maxsize=2)
def _references(paths: tuple[str, ...]) -> list[np.ndarray]:
    if not paths:
        raise ValueError("FDA and histogram matching need reference photos")
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]
