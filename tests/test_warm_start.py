"""Growing a trained model (``--warm-start``) and taking another model's VAE (``--vae-from``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from amadapter import world
from amadapter.pipelines.model_factory import build_pipeline
from amadapter.pipelines.pipeline_amadapter import AMAdapterPipeline
from amadapter.pipelines.warm_start import take_vae, warm_start
from jobs import train_structure as train_structure_job

from model_helpers import HEIGHT, WIDTH, single_thread  # noqa: F401  (fixture)

FINE_ATTENTION = {"unet": {"down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                           "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]}}


def _trained(seed: int) -> AMAdapterPipeline:
    """A tiny model whose weights differ from every fresh preset's (another seed, and a VAE
    scaling no preset has)."""
    pipe = build_pipeline("tiny", seed=seed)
    pipe.vae.register_to_config(scaling_factor=0.61)
    return pipe


def _unet_output(pipe: AMAdapterPipeline) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, HEIGHT // 2, WIDTH // 2, generator=generator)
    context = torch.randn(2, 4, pipe.unet.config.cross_attention_dim, generator=generator)
    with torch.no_grad():
        return pipe.unet(latents, torch.tensor([900, 20]), context).sample


def test_a_grown_unet_first_computes_what_the_trained_one_did(single_thread):
    trained = _trained(seed=7)
    grown = build_pipeline("tiny", FINE_ATTENTION, seed=0)
    assert _unet_output(grown).shape == _unet_output(trained).shape
    new = warm_start(grown, trained)
    # only the UNet changed architecture; its new tensors are the first level's transformer blocks
    assert set(new) == {"unet"} and new["unet"]
    assert all(".attentions." in name and name.split(".")[1] in {"0", "1"} for name in new["unet"])
    assert any(name.startswith("down_blocks.0.attentions.0.") for name in new["unet"])
    torch.testing.assert_close(_unet_output(grown), _unet_output(trained), rtol=0, atol=0)
    # components of the same architecture are taken whole, configuration included
    assert grown.vae is trained.vae and grown.vae.config.scaling_factor == 0.61
    assert grown.structure_encoder is trained.structure_encoder and grown.adapter is trained.adapter
    # the new blocks are trainable: their output projection is zero, not frozen
    block = grown.unet.down_blocks[0].attentions[0]
    assert block.proj_out.weight.abs().sum() == 0 and block.proj_out.weight.requires_grad


def test_take_vae_replaces_weights_and_scaling_and_checks_the_latent_channels(tmp_path, single_thread):
    other = _save(_trained(seed=3), tmp_path / "other")
    pipe = build_pipeline("tiny", seed=0)
    take_vae(pipe, other)
    assert pipe.vae.config.scaling_factor == pytest.approx(0.61)
    reference = AMAdapterPipeline.from_pretrained(other, dtype=torch.float32)
    for key, value in reference.vae.state_dict().items():
        torch.testing.assert_close(pipe.vae.state_dict()[key], value)
    wider = build_pipeline("tiny", {"vae": {"latent_channels": 8}, "unet": {"in_channels": 8, "out_channels": 8}})
    with pytest.raises(ValueError, match="8 latent channels; the UNet reads 4"):
        take_vae(build_pipeline("tiny"), _save(wider, tmp_path / "wider"))


def _save(pipe: AMAdapterPipeline, path) -> str:
    pipe.save_pretrained(path)
    return str(path)


def test_cli_grows_a_model_with_another_models_vae_and_trains_it(tmp_path, capsys, single_thread):
    trained = _save(_trained(seed=5), tmp_path / "trained")
    vae_source = build_pipeline("tiny", seed=9)
    vae_source.vae.register_to_config(scaling_factor=0.77)
    vae_dir = _save(vae_source, tmp_path / "vae_source")
    train_structure_job.main([
        "--model", "tiny", "--preset-overrides", json.dumps(FINE_ATTENTION), "--warm-start", trained,
        "--vae-from", vae_dir, "--size", f"{HEIGHT}x{WIDTH}", "--batch-size", "2", "--steps", "2",
        "--loader-workers", "0", "--log-every", "1", "--run-dir", str(tmp_path / "run"),
        "--output", str(tmp_path / "grown")])
    assert f"warm start from {trained}: unet " in capsys.readouterr().out
    grown = AMAdapterPipeline.from_pretrained(tmp_path / "grown", dtype=torch.float32)
    assert grown.unet.config.down_block_types[0] == "CrossAttnDownBlock2D"
    assert grown.vae.config.scaling_factor == pytest.approx(0.77)
    source = AMAdapterPipeline.from_pretrained(trained, dtype=torch.float32)
    # trained two steps from the warm start: close to it, not equal, and not the fresh preset
    fresh = build_pipeline("tiny", FINE_ATTENTION, seed=0).unet.state_dict()
    key = "down_blocks.1.resnets.0.conv1.weight"
    moved = (grown.unet.state_dict()[key] - source.unet.state_dict()[key]).abs().max()
    assert 0 < moved < (fresh[key] - source.unet.state_dict()[key]).abs().max() / 10
    labels = world.layout(900_001, HEIGHT, WIDTH)
    image = grown([labels], [world.render(labels, world.style(3))], [labels], num_inference_steps=2).images
    assert image.shape == (1, HEIGHT, WIDTH, 3) and np.isfinite(image).all()


@pytest.mark.parametrize("start", [["--model", "DIR"], ["--stable-diffusion", "DIR"]])
def test_warm_start_needs_a_preset(tmp_path, start):
    start = [str(tmp_path) if arg == "DIR" else arg for arg in start]
    with pytest.raises(SystemExit, match="needs a preset"):
        train_structure_job.main([*start, "--warm-start", str(tmp_path),
                                  "--run-dir", str(tmp_path / "run"), "--output", str(tmp_path / "out")])
