"""Frechet distance between Gaussians fitted to two feature sets (FID when the features are
Inception's pool3; the name of the feature space must travel with the number).

    d = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2)

computed in float64 with symmetric eigendecompositions only (S_a^1/2 S_b S_a^1/2 is
symmetric positive semi-definite, so its square root's trace is the sum of the square
roots of its eigenvalues): no scipy, no complex parts to discard, and exact for
singular covariances (fewer samples than feature dimensions). torchmetrics' FID agrees
(its ``_compute_fid``: 4e-15 relative at 500x64, 1e-8 at 40x64, 5e-8 at 200x2048), but its
metric takes images and runs the extractor itself, while the evaluation extracts features
once for FID, KID and the per-sample scores.
"""

from __future__ import annotations

import numpy as np
import torch


def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, D)`` features -> (mean ``(D,)``, unbiased covariance ``(D, D)``), float64."""
    x = torch.as_tensor(features, dtype=torch.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need (N, D) features with N >= 2, got shape {tuple(x.shape)}")
    mean = x.mean(0)
    centred = x - mean
    return mean, centred.T @ centred / (x.shape[0] - 1)


def gaussian_frechet_distance(
    mean_a: torch.Tensor, cov_a: torch.Tensor, mean_b: torch.Tensor, cov_b: torch.Tensor
) -> float:
    """The Frechet (2-Wasserstein squared) distance between N(mean_a, cov_a) and N(mean_b, cov_b)."""
    mean_a, cov_a, mean_b, cov_b = (t.to(torch.float64) for t in (mean_a, cov_a, mean_b, cov_b))
    root_a = _psd_sqrt(cov_a)
    cross = torch.linalg.eigvalsh(_symmetric(root_a @ cov_b @ root_a)).clamp(min=0).sqrt().sum()
    distance = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return float(distance.clamp(min=0))  # rounding can leave -1e-12 for equal inputs


def frechet_distance(features_a, features_b) -> float:
    """Frechet distance between the Gaussians fitted to two ``(N, D)`` feature sets."""
    return gaussian_frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(_symmetric(matrix))
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def _symmetric(matrix: torch.Tensor) -> torch.Tensor:
    return (matrix + matrix.T) / 2
