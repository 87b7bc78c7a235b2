"""Structure encoder and its attachment to a stock UNet2DConditionModel."""

import numpy as np
import pytest
import torch

from amadapter.io.labels import one_hot
from amadapter.models.structure_encoder import StructureEncoder
from amadapter.pipelines.structure_guidance import add_control, cross_normalise, structure_control, unet_with_control
from tests.model_helpers import block_labels, tiny_pipeline, single_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("single_thread")


def test_encoder_size_at_sd15_width():
    params = sum(p.numel() for p in StructureEncoder(out_channels=320).parameters())
    assert 3.0e6 < params < 4.0e6


def test_encode_labels_is_one_hot_forward_with_ignore_channel():
    pipe = tiny_pipeline()
    rng = np.random.default_rng(0)
    labels = np.stack([block_labels(rng), block_labels(rng)])
    hot = torch.from_numpy(np.stack([one_hot(m) for m in labels]))
    with torch.no_grad():
        expected = pipe.structure_encoder(hot)
        got = pipe.structure_encoder.encode_labels(torch.from_numpy(labels))
    torch.testing.assert_close(got, expected)
    assert got.shape == (2, 32, 32 // 8, 64 // 8)


def test_cross_normalise_gives_each_row_the_feature_statistics():
    control = torch.randn(3, 8, 4, 4) * torch.tensor([1.0, 5.0, 0.1]).view(3, 1, 1, 1)
    feature = torch.randn(3, 8, 4, 4) * 2 + torch.tensor([0.0, 3.0, -1.0]).view(3, 1, 1, 1)
    out = cross_normalise(control, feature)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), feature.mean(dim=(1, 2, 3)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.std(dim=(1, 2, 3)), feature.std(dim=(1, 2, 3)), atol=1e-4, rtol=1e-4)


def test_control_is_added_after_first_down_block_and_only_inside_the_block():
    """The control reaches down_blocks[1]'s input, and only inside structure_control."""
    pipe = tiny_pipeline()
    unet = pipe.unet
    latents, emb = torch.randn(2, 4, 16, 32), torch.randn(2, 4, 32)
    control = torch.randn(2, 32, 4, 8)
    seen = {}

    def first_out(_m, _i, output):
        seen["first"] = output[0].clone()

    def second_in(_m, inputs, kwargs):
        seen["second"] = (inputs[0] if inputs else kwargs["hidden_states"]).clone()

    hooks = [
        unet.down_blocks[0].register_forward_hook(first_out, prepend=True),  # before ours
        unet.down_blocks[1].register_forward_pre_hook(second_in, with_kwargs=True),
    ]
    try:
        with torch.no_grad():
            plain = unet(latents, 10, encoder_hidden_states=emb).sample
            controlled = unet_with_control(unet, latents, 10, emb, control, scale=0.5)
    finally:
        for h in hooks:
            h.remove()
    # the hook that runs before ours saw the block's own output; the next block got it plus control
    torch.testing.assert_close(seen["second"], add_control(seen["first"], control, 0.5))
    assert not torch.allclose(plain, controlled)
    with torch.no_grad():
        after = unet(latents, 10, encoder_hidden_states=emb).sample
    torch.testing.assert_close(after, plain)  # outside the block the control is gone


def test_control_per_row_does_not_leak_between_rows():
    pipe = tiny_pipeline()
    latents, emb = torch.randn(2, 4, 16, 32), torch.randn(2, 4, 32)
    control = torch.randn(2, 32, 4, 8)
    with torch.no_grad():
        both = unet_with_control(pipe.unet, latents, 10, emb, control)
        changed = control.clone()
        changed[1] = torch.randn(32, 4, 8)
        with structure_control(pipe.unet, changed):
            other = pipe.unet(latents, 10, encoder_hidden_states=emb).sample
    torch.testing.assert_close(other[0], both[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(other[1], both[1])
