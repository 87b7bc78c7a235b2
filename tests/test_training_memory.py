"""Memory options: activation checkpointing of the adapter's explicit-logit path (the
same loss and gradients, far fewer bytes kept for backward) and 8-bit Adam."""

import importlib.util

import pytest
import torch

from amadapter.pipelines.model_factory import build_pipeline
from amadapter.training.conditioning import PromptConditioning
from amadapter.training.data import WorldPairs
from amadapter.training.loop import PhaseOptions, make_optimizer
from amadapter.training.noise import RowRandom
from amadapter.training.stage2 import adapter_loss


def _step(pipe, batch, checkpointed: bool):
    """Loss, adapter gradients and the bytes autograd keeps for backward."""
    pipe.adapter.gradient_checkpointing = checkpointed
    pipe.adapter.zero_grad(set_to_none=True)
    kept = []

    def pack(tensor):
        kept.append(tensor.numel() * tensor.element_size())
        return tensor

    conditioning = PromptConditioning.from_pipeline(pipe, "cpu")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = adapter_loss(pipe, conditioning, batch, RowRandom(0, 0, range(2)))
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in pipe.adapter.named_parameters()}, sum(kept)


def test_adapter_checkpointing_same_gradients_fewer_kept_bytes():
    pipe = build_pipeline("tiny", seed=0)
    for module in (pipe.unet, pipe.vae, pipe.structure_encoder, pipe.prompt_embeds):
        module.requires_grad_(False)
    batch = WorldPairs(32, 64, batch_size=2, seed=1)(0)
    plain_loss, plain_grads, plain_bytes = _step(pipe, batch, checkpointed=False)
    loss, grads, kept_bytes = _step(pipe, batch, checkpointed=True)
    assert torch.equal(loss, plain_loss)
    assert grads.keys() == plain_grads.keys() and any(g.abs().sum() > 0 for g in grads.values())
    for key in grads:
        torch.testing.assert_close(grads[key], plain_grads[key], rtol=1e-5, atol=1e-7, msg=key)
    assert kept_bytes < 0.6 * plain_bytes, (kept_bytes, plain_bytes)


def test_8bit_adam_without_bitsandbytes_says_what_to_install():
    if importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed here")
    options = PhaseOptions(steps=1, lr=1e-3, optimizer="adamw8bit")
    with pytest.raises(SystemExit, match="pip install bitsandbytes"):
        make_optimizer(options, list(torch.nn.Linear(2, 2).parameters()))
