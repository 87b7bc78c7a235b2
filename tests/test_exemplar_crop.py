"""Exemplars keep their geometry: the crop windows, and the pipeline cropping before it resizes."""

import numpy as np
import pytest

from amadapter.pipelines.exemplar_crop import centred_box, class_keeping_box, crop
from tests.model_helpers import block_labels, photo, single_thread, tiny_pipeline  # noqa: F401


def test_centred_box_is_the_largest_window_of_the_aspect():
    assert centred_box(720, 1280, 2.0) == (40, 0, 640, 1280)  # BDD100K frame, Cityscapes aspect
    assert centred_box(1024, 2048, 16 / 9) == (0, 114, 1024, 1820)
    assert centred_box(64, 128, 2.0) == (0, 0, 64, 128)  # the same aspect: the whole frame


def test_class_keeping_box_keeps_the_classes_a_centred_crop_cuts():
    labels = np.full((72, 128), 2, np.uint8)  # building
    labels[:4] = 10  # a strip of sky at the very top
    labels[-4:] = 0  # and road at the very bottom
    assert 10 not in crop(labels, centred_box(72, 128, 2.0))
    top, left, h, w = class_keeping_box(labels, 2.0, np.array([10, 2]))
    assert (h, w, left) == (64, 128, 0) and 10 in crop(labels, (top, left, h, w))
    # with both strips wanted, the rank ties on classes (2 of 3) and pixels: nearest the centre wins
    assert class_keeping_box(labels, 2.0, np.array([0, 10])) in {(0, 0, 64, 128), (8, 0, 64, 128)}


@pytest.mark.usefixtures("single_thread")
def test_pipeline_crops_an_exemplar_of_another_aspect_before_resizing():
    pipe = tiny_pipeline()
    rng = np.random.default_rng(3)
    target = block_labels(rng, 16, 32)
    wide_labels, wide_photo = block_labels(rng, 24, 32), photo(rng, 24, 32)  # 4:3, output 2:1
    box = centred_box(24, 32, 2.0)
    call = dict(num_inference_steps=2, seeds=[5], height=16, width=32, output_type="np")
    whole = pipe([target], [wide_photo], [wide_labels], **call).images
    cropped = pipe([target], [crop(wide_photo, box)], [crop(wide_labels, box)], **call).images
    np.testing.assert_array_equal(whole, cropped)
