"""Exemplar paths (inverted, noised) and batched inversion: cost and determinism."""

import numpy as np
import pytest

from tests.model_helpers import block_labels, photo, single_thread, tiny_pipeline  # noqa: F401
from tests.test_model_inversion import _ForwardCounter

pytestmark = pytest.mark.usefixtures("single_thread")

STEPS = 3


def _scene(exemplars: int = 3):
    rng = np.random.default_rng(21)
    targets = [block_labels(rng) for _ in range(exemplars)]
    return targets, [photo(rng) for _ in range(exemplars)], [block_labels(rng) for _ in range(exemplars)]


def test_noised_path_runs_no_inversion_and_still_reads_the_exemplar():
    pipe = tiny_pipeline()
    targets, images, labels = _scene(2)
    unet = _ForwardCounter(pipe.unet)
    first = pipe(targets[:1], images[:1], labels[:1], seeds=[2], num_inference_steps=STEPS,
                 exemplar_path="noised").images
    assert unet.calls == STEPS  # sampling only, on a cache miss too
    again = pipe(targets[:1], images[:1], labels[:1], seeds=[2], num_inference_steps=STEPS,
                 exemplar_path="noised").images
    np.testing.assert_array_equal(first, again)
    other = pipe(targets[:1], images[1:], labels[1:], seeds=[2], num_inference_steps=STEPS,
                 exemplar_path="noised").images
    assert not np.allclose(first, other, atol=1e-4)
    inverted = pipe(targets[:1], images[:1], labels[:1], seeds=[2], num_inference_steps=STEPS,
                     exemplar_path="inverted").images
    assert not np.allclose(first, inverted, atol=1e-4)


def test_noised_exemplar_is_the_same_in_any_company():
    pipe = tiny_pipeline()
    targets, images, labels = _scene(3)
    alone = pipe(targets[:1], images[:1], labels[:1], seeds=[5], num_inference_steps=STEPS,
                 exemplar_path="noised").images
    together = pipe(targets, images, labels, seeds=[5, 6, 7], num_inference_steps=STEPS,
                    exemplar_path="noised").images
    np.testing.assert_allclose(together[0], alone[0], atol=1e-5)  # batch rounding only


def test_batched_inversion_is_one_batch_and_does_not_depend_on_company():
    targets, images, labels = _scene(3)
    together = tiny_pipeline()
    unet = _ForwardCounter(together.unet)
    out = together(targets, images, labels, seeds=[1, 2, 3], num_inference_steps=STEPS, exemplar_path="inverted",
                   inversion_batch_size=4).images
    assert unet.calls == STEPS + STEPS  # three exemplars inverted in one padded batch
    # the last exemplar inverted in another company (alone, padded to 4), in a fresh
    # pipeline, then rendered from the cache: the same bytes as in the first call
    company = [images[2], images[0]], [labels[2], labels[0]]
    fresh = tiny_pipeline()
    fresh(targets[:2], *company, seeds=[9, 9], num_inference_steps=STEPS, inversion_batch_size=4, exemplar_path="inverted")
    again = fresh(targets, images, labels, seeds=[1, 2, 3], num_inference_steps=STEPS, exemplar_path="inverted",
                  inversion_batch_size=4).images
    assert again[2].tobytes() == out[2].tobytes()


def test_inversion_batch_size_is_part_of_the_cache_key():
    pipe = tiny_pipeline()
    targets, images, labels = _scene(1)
    unet = _ForwardCounter(pipe.unet)
    pipe(targets, images, labels, num_inference_steps=STEPS, exemplar_path="inverted")
    pipe(targets, images, labels, num_inference_steps=STEPS, inversion_batch_size=2, exemplar_path="inverted")
    assert unet.calls == 2 * (STEPS + STEPS) and pipe.inversion_cache.hits == 0


def test_unknown_exemplar_path_is_rejected():
    pipe = tiny_pipeline()
    targets, images, labels = _scene(1)
    with pytest.raises(ValueError, match="exemplar_path"):
        pipe(targets, images, labels, num_inference_steps=1, exemplar_path="copied")
