"""The benchmark's bookkeeping on hand-made maps: transferable classes, per-instance error,
and the class-only matcher."""

import numpy as np
import pytest

from amadapter.io.labels import IGNORE_ID
from amadapter.world.metrics import (
    class_only_image, instance_colour_error, shared_instances, transferable, transferable_colour_error,
    untransferable_share,
)  # fmt: skip


def _labels():
    labels = np.zeros((4, 6), np.uint8)  # class 0 on the left,
    labels[:, 2:4] = 1  # class 1 in the middle,
    labels[:, 4:] = 2  # class 2 on the right,
    labels[0, :] = IGNORE_ID  # an ignored top row
    return labels


def test_transferable_classes_and_untransferable_share():
    labels = _labels()
    exemplar = np.full((3, 3), 1, np.uint8)
    exemplar[0, 0], exemplar[2, 2] = 5, IGNORE_ID  # the exemplar shows 1 and 5 (and ignore)
    mask = transferable(labels, exemplar)
    np.testing.assert_array_equal(mask, (labels == 1))
    assert untransferable_share(labels, exemplar) == pytest.approx(12 / 18)  # classes 0 and 2, of 18 labelled
    assert untransferable_share(labels, labels) == 0.0


def test_transferable_error_ignores_what_the_exemplar_cannot_show():
    labels = _labels()
    truth = np.zeros((4, 6, 3), np.uint8)
    output = truth.copy()
    output[labels == 0] = 200  # wrong on class 0, which the exemplar lacks
    output[labels == 2] = [30, 40, 0]  # off by 50 on class 2, which it shows
    exemplar = np.array([[1, 2]], np.uint8)
    assert transferable_colour_error(output, truth, labels, exemplar) == pytest.approx(25.0)  # (0 + 50) / 2
    with pytest.raises(ValueError, match="no transferable class"):
        transferable_colour_error(output, truth, labels, np.array([[7]], np.uint8))


def test_instance_error_and_shared_instances():
    instances = np.repeat(np.array([[0, 0, 1, 1, 2, 2]]), 4, axis=0)
    other = np.repeat(np.array([[1, 1, 1, 2, 3, 3]]), 4, axis=0)
    assert shared_instances(instances, other, min_pixels=4).tolist() == [1, 2]
    assert shared_instances(instances, other, min_pixels=5).tolist() == [1]  # instance 2: 4 pixels in `other`
    truth = np.zeros((4, 6, 3), np.uint8)
    output = truth.copy()
    output[instances == 1] = [0, 30, 40]  # 50 off
    output[instances == 2] = [9, 0, 0]
    assert instance_colour_error(output, truth, instances, np.array([1, 2])) == pytest.approx(29.5)
    with pytest.raises(ValueError, match="share none"):
        instance_colour_error(output, truth, instances, np.array([], int))


def test_class_only_image_gives_each_instance_the_exemplar_class_mean_and_keeps_texture():
    labels = np.zeros((2, 4), np.uint8)  # one class, two instances of different colours
    instances = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    truth = np.zeros((2, 4, 3), np.uint8)
    truth[:, :2] = [100, 0, 0]
    truth[:, 2:] = [0, 100, 0]
    truth[0, 0, 0] += 10  # texture inside instance 0
    exemplar_labels = np.array([[0, 0, 3]], np.uint8)
    exemplar = np.array([[[0, 0, 0], [0, 0, 100], [255, 255, 255]]], np.uint8)  # class 0 mean (0, 0, 50)
    out = class_only_image(truth, labels, instances, exemplar, exemplar_labels)
    np.testing.assert_allclose(out[instances == 0].mean(0), [0, 0, 50])
    np.testing.assert_allclose(out[instances == 1].mean(0), [0, 0, 50])
    np.testing.assert_allclose(out[0, 0] - out[1, 0], [10, 0, 0])  # the truth's texture is kept
    truth_means_0 = truth[instances == 0].astype(float).mean(0)
    expected = (np.linalg.norm(truth_means_0 - [0, 0, 50]) + np.linalg.norm(np.array([0, 100, 0]) - [0, 0, 50])) / 2
    assert instance_colour_error(out, truth, instances, np.array([0, 1])) == pytest.approx(expected)
    # Per class (the scene suite's unit) the error is the distance between class means.
    per_class = class_only_image(truth, labels, labels, exemplar, exemplar_labels)
    np.testing.assert_allclose(per_class.mean((0, 1)), [0, 0, 50])
