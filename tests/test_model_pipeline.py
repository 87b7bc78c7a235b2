"""AMAdapterPipeline: shapes, per-target determinism, exemplar sharing, batching."""

import numpy as np
import pytest
import torch

from amadapter.io.errors import UnknownLabelIdError
from tests.model_helpers import HEIGHT, WIDTH, block_labels, photo, single_thread, tiny_pipeline  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")

STEPS = 3


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(7)
    return {
        "targets": [block_labels(rng) for _ in range(5)],
        "exemplar_images": [photo(rng), photo(rng)],
        "exemplar_labels": [block_labels(rng), block_labels(rng)],
    }


def _count_unet_rows(pipe):
    rows = []
    handle = pipe.unet.register_forward_pre_hook(lambda m, args, kw: rows.append((args[0] if args else kw["sample"]).shape[0]), with_kwargs=True)
    return rows, handle


@pytest.mark.parametrize("mode", ["none", "augmented", "categorical", "am_adapter"])
def test_non_square_shapes_in_every_mode(pipe, scene, mode):
    out = pipe(scene["targets"][:2], scene["exemplar_images"][:1], scene["exemplar_labels"][:1],
               num_inference_steps=2, mode=mode).images
    assert out.shape == (2, HEIGHT, WIDTH, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_other_sizes_and_output_types(pipe, scene):
    tall = pipe(scene["targets"][:1], scene["exemplar_images"][:1], scene["exemplar_labels"][:1],
                num_inference_steps=1, height=64, width=32, output_type="pt").images
    assert tall.shape == (1, 3, 64, 32)
    latents = pipe(scene["targets"][:1], num_inference_steps=1, mode="none", output_type="latent").images
    assert latents.shape == (1, 4, HEIGHT // 2, WIDTH // 2)
    pil = pipe(scene["targets"][:1], num_inference_steps=1, mode="none", output_type="pil").images
    assert pil[0].size == (WIDTH, HEIGHT)
    with pytest.raises(ValueError, match="multiple"):
        pipe(scene["targets"][:1], num_inference_steps=1, mode="none", height=30, width=64)


def test_target_sharing_an_exemplar_with_four_others_equals_target_alone(pipe, scene):
    alone = pipe([scene["targets"][0]], scene["exemplar_images"][:1], scene["exemplar_labels"][:1],
                 seeds=[11], num_inference_steps=STEPS).images
    rows, handle = _count_unet_rows(pipe)
    try:
        shared = pipe(scene["targets"], scene["exemplar_images"][:1], scene["exemplar_labels"][:1],
                      assignment=[0] * 5, seeds=[11, 1, 2, 3, 4], num_inference_steps=STEPS).images
    finally:
        handle.remove()
    # one exemplar row serves all five targets: 2 * 5 guided target rows + 1
    assert set(rows) == {2 * 5 + 1}
    np.testing.assert_allclose(shared[0], alone[0], atol=1e-5)
    assert not np.allclose(shared[1], shared[0], atol=1e-3)


def test_same_seed_same_image_and_other_seed_other_image(pipe, scene):
    args = (scene["targets"][:2], scene["exemplar_images"], scene["exemplar_labels"])
    a = pipe(*args, seeds=[5, 6], num_inference_steps=STEPS).images
    b = pipe(*args, seeds=[5, 6], num_inference_steps=STEPS).images
    c = pipe(*args, seeds=[5, 7], num_inference_steps=STEPS).images
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[0], c[0])
    assert not np.allclose(a[1], c[1], atol=1e-3)


def test_duplicate_exemplars_run_once(pipe, scene):
    rows, handle = _count_unet_rows(pipe)
    image, labels = scene["exemplar_images"][0], scene["exemplar_labels"][0]
    try:
        pipe(scene["targets"][:2], [image, image.copy()], [labels, labels.copy()], assignment=[0, 1],
             num_inference_steps=1)
    finally:
        handle.remove()
    assert rows[-1] == 2 * 2 + 1


def test_the_exemplar_changes_the_target(pipe, scene):
    def render(exemplar):
        return pipe(scene["targets"][:1], scene["exemplar_images"][exemplar:exemplar + 1],
                    scene["exemplar_labels"][exemplar:exemplar + 1], seeds=[3], num_inference_steps=STEPS).images
    assert not np.allclose(render(0), render(1), atol=1e-4)


def test_bad_label_values_are_a_named_input_error(pipe, scene):
    bad = scene["targets"][0].copy()
    bad[0, 0] = 40
    with pytest.raises(UnknownLabelIdError, match=r"target_labels\[1\]"):
        pipe([scene["targets"][1], bad], num_inference_steps=1, mode="none")
