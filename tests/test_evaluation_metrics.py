"""amadapter.evaluation: Frechet distance and KID against closed forms and known properties,
and the confusion-matrix IoU figures on a hand-checked example."""

import numpy as np
import pytest
import torch

from amadapter.evaluation.confusion import class_iou, confusion_matrix, mean_iou
from amadapter.evaluation.frechet import feature_statistics, frechet_distance, gaussian_frechet_distance
from amadapter.evaluation.kernel_distance import kernel_distance


def _random_covariance(rng, dim):
    a = rng.normal(size=(dim, dim))
    return torch.from_numpy(a @ a.T + 0.1 * np.eye(dim))


def test_frechet_closed_form_for_gaussians_sharing_an_eigenbasis():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    d_a, d_b = rng.uniform(0.5, 3, 6), rng.uniform(0.5, 3, 6)
    cov_a, cov_b = (torch.from_numpy(q @ np.diag(d) @ q.T) for d in (d_a, d_b))
    mean_a, mean_b = torch.from_numpy(rng.normal(size=6)), torch.from_numpy(rng.normal(size=6))
    expected = float(((mean_a - mean_b) ** 2).sum()) + float(((np.sqrt(d_a) - np.sqrt(d_b)) ** 2).sum())
    assert gaussian_frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(expected, rel=1e-9)


def test_frechet_general_covariances_symmetric_and_matches_trace_of_product_root():
    rng = np.random.default_rng(1)
    cov_a, cov_b = _random_covariance(rng, 5), _random_covariance(rng, 5)
    mean = torch.zeros(5, dtype=torch.float64)
    d = gaussian_frechet_distance(mean, cov_a, mean, cov_b)
    assert d == pytest.approx(gaussian_frechet_distance(mean, cov_b, mean, cov_a), rel=1e-9)
    # tr((S_a S_b)^1/2) = sum of the square roots of the (real, positive) eigenvalues of S_a S_b
    cross = np.sqrt(np.linalg.eigvals((cov_a @ cov_b).numpy()).real).sum()
    assert d == pytest.approx(float(cov_a.trace() + cov_b.trace()) - 2 * cross, rel=1e-9)


def test_frechet_of_samples_same_set_zero_shift_adds_its_square():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 16))
    assert frechet_distance(x, x) == pytest.approx(0, abs=1e-9)
    shift = np.full(16, 0.5)
    assert frechet_distance(x, x + shift) == pytest.approx(16 * 0.25, rel=1e-9)
    # fewer samples than dimensions: singular covariances still give a finite, exact zero
    few = rng.normal(size=(5, 16))
    assert frechet_distance(few, few) == pytest.approx(0, abs=1e-9)
    # two large samples of one Gaussian come close to 0; a scaled one is far
    y = rng.normal(size=(4000, 4))
    z = rng.normal(size=(4000, 4))
    assert frechet_distance(y, z) < 0.01 < 1.5 < frechet_distance(y, 2 * z)  # exact: 4 x (2-1)^2 = 4
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(x[:1])


def test_kid_near_zero_for_one_distribution_positive_when_shifted_and_seeded():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    same, std, size = kernel_distance(a, b, subsets=20, subset_size=100)
    shifted, _, _ = kernel_distance(a, b + 1.0, subsets=20, subset_size=100)
    assert size == 100 and abs(same) < 3 * std + 1e-3
    assert shifted > 10 * max(abs(same), 1e-3)
    assert kernel_distance(a, b, subsets=20, subset_size=100) == (same, std, size)  # seeded
    assert kernel_distance(a[:50], b, subset_size=100)[2] == 50  # subsets no larger than a set


def test_confusion_iou_and_mean_iou():
    target = np.array([[0, 0, 1, 255]], np.uint8)
    prediction = np.array([[0, 1, 1, 5]], np.uint8)
    confusion = confusion_matrix(prediction, target)
    assert confusion.sum() == 3  # the ignore pixel does not count
    iou = class_iou(confusion)
    assert iou[0] == pytest.approx(1 / 2) and iou[1] == pytest.approx(1 / 2)
    assert np.isnan(iou[5])  # only predicted: no IoU of its own
    assert mean_iou(confusion) == pytest.approx(0.5)
