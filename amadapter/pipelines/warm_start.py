"""Start a fresh (preset) model from a trained one: grow a model without losing its training.

A component with the same tensors (names and shapes) as the trained one's is taken whole,
configuration included (the VAE's latent scaling comes with it). A component whose
architecture differs (e.g. a UNet given attention at a finer level) gets every tensor whose
name and shape match; of what is left new, transformer blocks start as the identity (their
output projection zeroed: they add nothing to the residual stream until trained), so the
grown model first computes what the trained one did.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from torch import nn

from amadapter.pipelines.pipeline_amadapter import AMAdapterPipeline

COMPONENTS = ("unet", "vae", "structure_encoder", "adapter", "prompt_embeds")


def warm_start(pipe: AMAdapterPipeline, trained: AMAdapterPipeline) -> dict[str, list[str]]:
    """Load ``trained`` into ``pipe`` in place; returns, per partly loaded component, the
    names of its tensors that stayed new (empty: every component was taken whole)."""
    components = {"scheduler": trained.scheduler}
    new_tensors = {}
    for name in COMPONENTS:
        fresh, source = getattr(pipe, name), getattr(trained, name)
        if _shapes(fresh) == _shapes(source):
            components[name] = source
            continue
        new_tensors[name] = _load_matching(fresh, source)
    pipe.register_modules(**components)
    return new_tensors


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _load_matching(fresh: nn.Module, source: nn.Module) -> list[str]:
    """Copy the tensors of ``source`` that ``fresh`` has under the same name and shape;
    zero the output projection of every transformer block that got none of its tensors."""
    ours = _shapes(fresh)
    matching = {k: v for k, v in source.state_dict().items() if ours.get(k) == tuple(v.shape)}
    fresh.load_state_dict(matching, strict=False)
    new = set(ours) - set(matching)
    for prefix, module in fresh.named_modules():
        if isinstance(module, Transformer2DModel) and all(f"{prefix}.{k}" in new for k in module.state_dict()):
            with torch.no_grad():
                module.proj_out.weight.zero_()
                module.proj_out.bias.zero_()
    return sorted(new)


def take_vae(pipe: AMAdapterPipeline, model_dir: str) -> None:
    """Replace the VAE of ``pipe`` with the one of a model directory (weights and latent
    scaling), e.g. a VAE trained further than the one the UNet was warm-started with."""
    vae = AutoencoderKL.from_pretrained(model_dir, subfolder="vae", torch_dtype=torch.float32)
    if vae.config.latent_channels != pipe.unet.config.in_channels:
        raise ValueError(f"the VAE of {model_dir} has {vae.config.latent_channels} latent channels; "
                         f"the UNet reads {pipe.unet.config.in_channels}")
    pipe.register_modules(vae=vae)
