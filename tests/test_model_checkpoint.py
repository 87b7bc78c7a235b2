"""Checkpoint directories: save/load round trip, safetensors only, the SD1.5 constructor."""

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

from amadapter.pipelines.model_factory import PRESETS, from_stable_diffusion
from amadapter.pipelines.pipeline_amadapter import AMAdapterPipeline
from tests.model_helpers import block_labels, photo, single_thread, tiny_pipeline  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")


def _render(pipe, **kw):
    rng = np.random.default_rng(3)
    return pipe([block_labels(rng), block_labels(rng)], [photo(rng)], [block_labels(rng)],
                num_inference_steps=2, seeds=[1, 2], **kw).images


def test_round_trip_gives_identical_outputs(tmp_path):
    pipe = tiny_pipeline(seed=4)
    before = _render(pipe)
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["structure_encoder"] == ["amadapter", "StructureEncoder"]
    assert index["adapter"] == ["amadapter", "AppearanceMatchingAdapter"]
    assert index["prompt_embeds"] == ["amadapter", "PromptEmbeddings"]
    assert index["text_encoder"] == [None, None]
    weights = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".ckpt", ".safetensors"})
    assert weights == [f"{c}/diffusion_pytorch_model.safetensors" for c in ("adapter", "prompt_embeds", "structure_encoder", "unet", "vae")]

    loaded = AMAdapterPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(_render(loaded), before)
    assert loaded.model_hash() == pipe.model_hash()


def _tiny_sd15_directory(path):
    """A directory laid out like runwayml/stable-diffusion-v1-5, with tiny components."""
    torch.manual_seed(0)
    unet_args = dict(PRESETS["tiny"]["unet"])
    UNet2DConditionModel(**unet_args).save_pretrained(path / "unet")
    AutoencoderKL(**PRESETS["tiny"]["vae"]).save_pretrained(path / "vae")
    PNDMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, skip_prk_steps=True).save_pretrained(path / "scheduler")
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars])}
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16).save_pretrained(path / "tokenizer")
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=16, bos_token_id=len(vocab) - 2,
                            eos_token_id=len(vocab) - 1, pad_token_id=len(vocab) - 1)
    CLIPTextModel(config).save_pretrained(path / "text_encoder")


def test_stable_diffusion_directory_gets_a_structure_encoder_and_adapter(tmp_path):
    sd = tmp_path / "sd15"
    _tiny_sd15_directory(sd)
    pipe = from_stable_diffusion(sd)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.structure_encoder.config.out_channels == 32 and pipe.adapter.config.heads == 8
    assert type(pipe.scheduler).__name__ == "DDIMScheduler" and pipe.scheduler.config.beta_schedule == "scaled_linear"
    a = _render(pipe, prompt="a photo of a <sks> driving scene")
    b = _render(pipe, prompt="night, rain")
    assert a.shape == (2, 32, 64, 3) and not np.allclose(a, b, atol=1e-4)

    pipe.save_pretrained(tmp_path / "ours")
    loaded = AMAdapterPipeline.from_pretrained(tmp_path / "ours")
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(_render(loaded, prompt="night, rain"), b)
