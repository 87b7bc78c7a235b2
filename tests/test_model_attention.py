"""Augmented self-attention processors: modes, row roles, the adapter's place."""

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from amadapter.models.attention_processors import AugmentedAttention, token_grid
from amadapter.pipelines.exemplar_forward import predict_with_exemplars, unet_rows
from tests.model_helpers import HEIGHT, WIDTH, block_labels, tiny_pipeline, single_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("single_thread")

B = 2


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    latents = torch.randn(2 * B, 4, 16, 32, generator=g)
    embeds = torch.randn(2 * B, 4, 32, generator=g)
    control = torch.randn(2 * B, 32, 4, 8, generator=g)
    labels = torch.from_numpy(np.stack([block_labels(rng) for _ in range(2 * B)]))
    return latents, embeds, control, labels


READS = torch.tensor([2, 3, -1, -1])  # rows 0, 1 read rows 2, 3


def _run(pipe, mode, rows=READS, inputs=None, **kw):
    x, e, c, labels = _inputs() if inputs is None else inputs
    with torch.no_grad():
        return unet_rows(pipe.unet, x, 50, e, c, rows, mode, labels, pipe.adapter, **kw)


def test_token_grid_finds_each_level_of_a_non_square_latent():
    assert token_grid(16 * 32, (16, 32)) == (16, 32)
    assert token_grid(8 * 16, (16, 32)) == (8, 16)
    assert token_grid(32 * 64, (64, 128)) == (32, 64)


def test_without_a_plan_processors_equal_diffusers_sdpa():
    pipe = tiny_pipeline()
    x, e, c, _ = _inputs()
    with torch.no_grad():
        ours = pipe.unet(x, 50, encoder_hidden_states=e).sample
        pipe.unet.set_attn_processor(AttnProcessor2_0())
        stock = pipe.unet(x, 50, encoder_hidden_states=e).sample
    torch.testing.assert_close(ours, stock, atol=1e-5, rtol=1e-5)


def test_reading_a_copy_of_yourself_equals_plain_attention():
    # softmax over [K; K] with values [V; V] is softmax over K: an exact identity
    pipe = tiny_pipeline()
    inputs = _inputs()
    for t in inputs:
        t[2:] = t[:2]
    plain = _run(pipe, "none", rows=torch.full((4,), -1), inputs=inputs)
    augmented = _run(pipe, "augmented", inputs=inputs)
    torch.testing.assert_close(augmented, plain, atol=1e-5, rtol=1e-5)


def test_modes_differ_and_collapse_where_they_should():
    pipe = tiny_pipeline()
    plain = _run(pipe, "none", rows=torch.full((4,), -1))
    augmented = _run(pipe, "augmented")
    categorical = _run(pipe, "categorical", beta=5.0)
    adapter = _run(pipe, "am_adapter")
    # exemplar rows (plain) are the same in every mode; target rows change
    for out in (augmented, categorical, adapter):
        torch.testing.assert_close(out[2:], plain[2:], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(augmented[:2], plain[:2], atol=1e-4)
    assert not torch.allclose(categorical[:2], augmented[:2], atol=1e-4)
    assert not torch.allclose(adapter[:2], augmented[:2], atol=1e-4)
    # beta 0 is augmented attention; so is the adapter where no layer is small enough
    torch.testing.assert_close(_run(pipe, "categorical", beta=0.0), augmented, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(_run(pipe, "am_adapter", max_tokens=64), augmented, atol=1e-5, rtol=1e-5)


def test_adapter_with_zero_output_is_augmented_attention():
    # phi == 0 -> A + 0 - 0/4 = A: the explicit-logit path must equal fused SDPA
    pipe = tiny_pipeline()
    for encoder in pipe.adapter.encoders.values():
        torch.nn.init.zeros_(encoder.norms[-1].weight)
        torch.nn.init.zeros_(encoder.norms[-1].bias)
    torch.testing.assert_close(_run(pipe, "am_adapter"), _run(pipe, "augmented"), atol=1e-5, rtol=1e-5)


def test_adapter_acts_only_at_layers_within_the_token_limit():
    pipe = tiny_pipeline()
    calls = []
    for encoder in pipe.adapter.encoders.values():
        encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[-1]))
    _run(pipe, "am_adapter", max_tokens=128)
    # tiny UNet: self-attention at 8x16 in down, mid and up blocks (1 + 1 + 2 layers)
    assert calls == [128] * 4


def test_stage2_forward_trains_only_the_adapter():
    pipe = tiny_pipeline()
    pipe.unet.requires_grad_(False)
    x, e, c, labels = _inputs()
    out = predict_with_exemplars(
        pipe.unet, pipe.adapter, x[:B], x[B:], torch.tensor([10, 700]), e[:B], c[:B], c[B:], labels[:B], labels[B:]
    )
    assert out.shape == (B, 4, 16, 32)
    out.square().mean().backward()
    grads = [p.grad for p in pipe.adapter.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert all(p.grad is None for p in pipe.unet.parameters())


def test_plan_rejects_chains_and_missing_labels():
    pipe = tiny_pipeline()
    attention = AugmentedAttention.of(pipe.unet)
    for rows, labels in [(torch.tensor([1, 2, -1]), torch.zeros(3, HEIGHT, WIDTH)), (torch.tensor([1, -1]), None)]:
        with pytest.raises(ValueError):
            attention.plan(rows, "am_adapter", (16, 32), labels, pipe.adapter)
