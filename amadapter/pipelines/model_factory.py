"""Model presets and constructors.

- ``build_pipeline("tiny")``: a few-thousand-parameter model for tests (CPU, seconds).
- ``build_pipeline("demo")``: the architecture of the bundled demo model: 64x128
  images, AutoencoderKL f=4 -> 4x16x32 latents, a UNet with self-attention only at
  8x16 and 4x8 tokens, v-prediction on a cosine schedule, stored prompt
  embeddings instead of a text encoder. Random weights until trained.
- ``from_stable_diffusion(path)``: a local Stable Diffusion 1.5 diffusers directory
  plus a fresh structure encoder and adapter.
- ``record_trained_size`` / ``trained_size``: a checkpoint records
  the image size its UNet was trained at as the UNet's ``sample_size`` (in latents,
  the diffusers convention); the augment job's default ``--size`` is read back from
  the config files alone, before any weights load. SD1.5's own ``sample_size`` (64,
  i.e. 512x512) would squash 2:1 Cityscapes maps, so stage-1 training overwrites it.

Presets are plain dicts of constructor arguments (``PRESETS``) so the training
jobs can read and override them.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from amadapter.models.attention_processors import AugmentedAttention
from amadapter.models.matcher import AppearanceMatchingAdapter
from amadapter.pipelines.pipeline_amadapter import AMAdapterPipeline, vae_scale_factor
from amadapter.models.prompt_embeddings import PromptEmbeddings
from amadapter.models.structure_encoder import StructureEncoder

PRESETS: dict[str, dict[str, dict]] = {
    "tiny": {
        "unet": dict(
            sample_size=(16, 32),
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(32, 64),
            layers_per_block=1,
            attention_head_dim=8,  # diffusers' legacy name: this is the number of heads
            cross_attention_dim=32,
            norm_num_groups=16,
        ),
        "vae": dict(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(16, 16),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=8,
            sample_size=32,
            scaling_factor=1.0,
            mid_block_add_attention=False,
        ),
        "scheduler": dict(
            num_train_timesteps=1000,
            beta_schedule="squaredcos_cap_v2",
            prediction_type="v_prediction",
            clip_sample=False,
            timestep_spacing="trailing",
        ),
        "structure_encoder": dict(stem_channels=8, stage_channels=(16, 32), out_channels=32, norm_num_groups=8),
        "adapter": dict(heads=8, max_tokens=128),
        "prompt_embeds": dict(seq_len=4, dim=32),
    },
    "demo": {
        "unet": dict(
            sample_size=(16, 32),
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(64, 96, 128),
            layers_per_block=1,
            attention_head_dim=8,  # 8 heads; self-attention at 8x16 and 4x8 tokens only
            cross_attention_dim=64,
            norm_num_groups=32,
        ),
        "vae": dict(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            block_out_channels=(32, 64, 64),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=8,  # as the bundled demo model was trained (4 channels per group)
            sample_size=64,
            scaling_factor=1.0,  # the training job sets it from the trained VAE's latent std
            mid_block_add_attention=False,
        ),
        "scheduler": dict(
            num_train_timesteps=1000,
            beta_schedule="squaredcos_cap_v2",
            prediction_type="v_prediction",
            clip_sample=False,
            timestep_spacing="trailing",
        ),
        "structure_encoder": dict(stem_channels=32, stage_channels=(64, 64), out_channels=64, norm_num_groups=16),
        "adapter": dict(heads=8, max_tokens=128),
        "prompt_embeds": dict(seq_len=4, dim=64),
    },
}


def build_pipeline(preset: str, overrides: dict[str, dict] | None = None, seed: int = 0) -> AMAdapterPipeline:
    """A pipeline with fresh weights from a preset ("tiny" or "demo").

    ``overrides`` replaces constructor arguments per component, e.g.
    ``{"unet": {"block_out_channels": (64, 128, 128)}}``. ``seed`` makes the random
    initialisation reproducible without touching the global generator."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    config = copy.deepcopy(PRESETS[preset])
    for component, args in (overrides or {}).items():
        config[component].update(args)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AMAdapterPipeline(
            unet=UNet2DConditionModel(**config["unet"]),
            vae=AutoencoderKL(**config["vae"]),
            scheduler=DDIMScheduler(**config["scheduler"]),
            structure_encoder=StructureEncoder(**config["structure_encoder"]),
            adapter=AppearanceMatchingAdapter(**config["adapter"]),
            prompt_embeds=PromptEmbeddings(**config["prompt_embeds"]),
        )


def trained_size(unet_config: dict, vae_config: dict) -> tuple[int, int]:
    """(height, width) in pixels the checkpoint was trained at: UNet sample size x VAE factor."""
    sample = unet_config["sample_size"]
    height, width = (sample, sample) if isinstance(sample, int) else sample
    factor = vae_scale_factor(vae_config)
    return height * factor, width * factor


def record_trained_size(pipe: AMAdapterPipeline, size: tuple[int, int]) -> None:
    """Record ``size`` (height, width in pixels) as the size the UNet was trained at, so a
    saved checkpoint carries it (``trained_size`` reads it back)."""
    factor = pipe.vae_scale_factor
    if size[0] % factor or size[1] % factor:
        raise ValueError(f"trained size {size} is not a multiple of the VAE factor {factor}")
    pipe.unet.register_to_config(sample_size=(size[0] // factor, size[1] // factor))


def from_stable_diffusion(
    path: str | Path,
    structure_encoder: StructureEncoder | None = None,
    adapter: AppearanceMatchingAdapter | None = None,
    torch_dtype: torch.dtype | None = None,
    adapter_max_tokens: int = 2048,
) -> AMAdapterPipeline:
    """Assemble a pipeline from a local Stable Diffusion 1.5 diffusers directory
    (subfolders unet, vae, text_encoder, tokenizer, scheduler; safetensors weights),
    with a fresh structure encoder (width of the UNet's first block) and adapter
    unless given. The scheduler becomes a DDIMScheduler with the directory's
    noise schedule."""
    path = Path(path)
    load = dict(use_safetensors=True, torch_dtype=torch_dtype)
    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **load)
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **load)
    text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", use_safetensors=True, dtype=torch_dtype)
    tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
    scheduler = DDIMScheduler.from_pretrained(path, subfolder="scheduler")
    if structure_encoder is None:
        structure_encoder = StructureEncoder(out_channels=unet.config.block_out_channels[0])
    if adapter is None:
        heads = AugmentedAttention(unet).heads  # the adapter needs one count for every layer
        if len(heads) != 1:
            raise ValueError(f"self-attention layers use different head counts {sorted(heads)}")
        adapter = AppearanceMatchingAdapter(heads=heads.pop(), max_tokens=adapter_max_tokens)
    pipe = AMAdapterPipeline(
        unet=unet,
        vae=vae,
        scheduler=scheduler,
        structure_encoder=structure_encoder,
        adapter=adapter,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
    )
    if torch_dtype is not None:
        pipe.to(dtype=torch_dtype)
    return pipe
