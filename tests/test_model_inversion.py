"""DDIM inversion and the inversion cache."""

import numpy as np
import pytest
import torch

from amadapter.pipelines.inversion import split_prediction
from amadapter.pipelines.inversion_cache import InversionCache
from tests.model_helpers import block_labels, photo, single_thread, tiny_pipeline  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_split_prediction_recovers_clean_sample_and_noise(prediction_type):
    x0, eps, alpha = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3), torch.tensor(0.3)
    sample = alpha.sqrt() * x0 + (1 - alpha).sqrt() * eps
    output = eps if prediction_type == "epsilon" else alpha.sqrt() * eps - (1 - alpha).sqrt() * x0
    got_x0, got_eps = split_prediction(output, sample, alpha, prediction_type)
    torch.testing.assert_close(got_x0, x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_eps, eps, atol=1e-5, rtol=1e-5)


class _ForwardCounter:
    """Counts real forward calls of a module through a hook."""

    def __init__(self, module):
        self.calls = 0
        self.handle = module.register_forward_hook(self._count)

    def _count(self, *_):
        self.calls += 1


def _scene():
    rng = np.random.default_rng(5)
    return [block_labels(rng)], [photo(rng)], [block_labels(rng)]


def test_cache_hit_does_no_unet_or_vae_encoder_work(tmp_path):
    pipe = tiny_pipeline()
    pipe.inversion_cache = InversionCache(tmp_path)
    targets, images, labels = _scene()
    unet, encoder = _ForwardCounter(pipe.unet), _ForwardCounter(pipe.vae.encoder)
    first = pipe(targets, images, labels, exemplar_path="inverted", num_inference_steps=3, seeds=[1]).images
    assert encoder.calls == 1 and unet.calls == 3 + 3  # 3 inversion steps + 3 sampling steps
    second = pipe(targets, images, labels, exemplar_path="inverted", num_inference_steps=3, seeds=[1]).images
    assert encoder.calls == 1 and unet.calls == 6 + 3  # sampling only
    assert pipe.inversion_cache.hits == 1
    np.testing.assert_array_equal(first, second)

    # another process (a fresh pipeline with the same weights) finds it in the directory
    other = tiny_pipeline()
    other.inversion_cache = InversionCache(tmp_path)
    other_unet = _ForwardCounter(other.unet)
    np.testing.assert_array_equal(other(targets, images, labels, exemplar_path="inverted", num_inference_steps=3, seeds=[1]).images, first)
    assert other_unet.calls == 3 and other.inversion_cache.hits == 1


def test_cache_misses_when_weights_or_schedule_change():
    pipe = tiny_pipeline()
    targets, images, labels = _scene()
    unet = _ForwardCounter(pipe.unet)
    pipe(targets, images, labels, exemplar_path="inverted", num_inference_steps=2)
    pipe(targets, images, labels, exemplar_path="inverted", num_inference_steps=3)  # other schedule: inverts again
    assert unet.calls == (2 + 2) + (3 + 3)
    with torch.no_grad():
        pipe.unet.conv_in.weight.add_(0.01)  # an optimiser step would do the same
    pipe(targets, images, labels, exemplar_path="inverted", num_inference_steps=3)
    assert unet.calls == 10 + 3 + 3 and pipe.inversion_cache.hits == 0


def test_cached_inversion_does_not_depend_on_the_company_of_the_exemplar():
    # exemplars are inverted one at a time, so a cache shared across calls is order-free:
    # a target rendered from a cache filled by a two-exemplar call is byte-identical to
    # the same target rendered by a fresh pipeline that inverts its exemplar alone
    rng = np.random.default_rng(9)
    targets = [block_labels(rng), block_labels(rng)]
    images, labels = [photo(rng), photo(rng)], [block_labels(rng), block_labels(rng)]
    fresh, warmed = tiny_pipeline(), tiny_pipeline()
    warmed(targets, images, labels, exemplar_path="inverted", num_inference_steps=2)
    unet = _ForwardCounter(warmed.unet)
    from_cache = warmed(targets[:1], images[1:], labels[1:], exemplar_path="inverted", num_inference_steps=2, seeds=[4]).images
    assert unet.calls == 2  # sampling only: the inversion came from the cache
    np.testing.assert_array_equal(
        from_cache, fresh(targets[:1], images[1:], labels[1:], exemplar_path="inverted", num_inference_steps=2, seeds=[4]).images
    )
