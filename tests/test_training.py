"""Both training stages on the tiny preset: loss goes down, resume is exact,
stage 2 moves only the adapter, the CLIs write loadable models."""

import json

import numpy as np
import pytest
import torch

from amadapter import world
from amadapter.models.matcher import encoder_parameter_count
from amadapter.pipelines.model_factory import build_pipeline
from amadapter.pipelines.pipeline_amadapter import AMAdapterPipeline
from amadapter.training.checkpoints import latest_checkpoint, list_checkpoints, resume_point
from amadapter.training.conditioning import PromptConditioning
from amadapter.training.data import (
    FrameCropPairs, FrameCrops, PairMixture, RowSource, WorldCropPairs, WorldPairs, WorldScenes,
)  # fmt: skip
from amadapter.training.loop import LOG_FILE, PhaseOptions
from amadapter.training.noise import RowRandom
from amadapter.training import stage1
from amadapter.training.stage1 import Stage1Options, structure_loss, train_structure, vae_loss
from amadapter.training.stage2 import Stage2Options, adapter_loss, train_adapter
from amadapter.world.crops import crop_pair
from amadapter.world.export import export_world
from jobs import train_adapter as train_adapter_job
from jobs import train_structure as train_structure_job
from storage.training_frames import frame_loader

from conftest import CITYSCAPES_ROOT

SIZE = (32, 64)  # tiny preset: VAE f=2, so 16x32 latents and 128-token attention


class Fixed(RowSource):
    """Step 0's global batch of ``source`` at every step (to watch the loss fall)."""

    def __init__(self, source: RowSource):
        self.source, self.batch_size, self.seed = source, source.batch_size, source.seed

    def sample(self, step, row):
        return self.source.sample(0, row)


def quiet(_line):
    pass


def _mean_loss(fn, seeds=4, rows=2):
    with torch.no_grad():
        return sum(fn(RowRandom(7, i, range(rows))).item() for i in range(seeds)) / seeds


def test_stage1_unet_loss_finite_and_decreasing_on_a_fixed_batch(tmp_path):
    pipe = build_pipeline("tiny", seed=0)
    source = WorldScenes(*SIZE, batch_size=2, seed=1)
    batch = source(0)
    conditioning = PromptConditioning.from_pipeline(pipe, "cpu")

    def loss(random):
        return structure_loss(pipe, conditioning, batch, random, uncond_prob=0.0)

    before = _mean_loss(loss)
    options = Stage1Options(unet=PhaseOptions(steps=8, lr=1e-3, log_every=2, checkpoint_every=100))
    train_structure(pipe, Fixed(source), tmp_path, options, print_fn=quiet)
    after = _mean_loss(loss)
    rows = [json.loads(line) for line in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6, 8] and all(np.isfinite(r["loss"]) for r in rows)
    assert after < 0.85 * before, (before, after)


def test_stage1_reference_training_reads_the_exemplar_and_lowers_the_loss(tmp_path, monkeypatch):
    pipe = build_pipeline("tiny", seed=0)
    source = WorldPairs(*SIZE, batch_size=2, seed=4)
    batch = source(0)
    conditioning = PromptConditioning.from_pipeline(pipe, "cpu")
    calls = []

    def spy(*args, **kwargs):  # records the row roles, then runs the real forward
        calls.append((args[5].tolist(), args[6], kwargs["labels"].shape[0]))
        return stage1.unet_rows.__wrapped__(*args, **kwargs)

    spy.__wrapped__ = stage1.unet_rows
    monkeypatch.setattr(stage1, "unet_rows", spy)

    def loss(random, uncond_prob=0.0):
        return structure_loss(pipe, conditioning, batch, random, uncond_prob=uncond_prob, reference_prob=1.0)

    with torch.no_grad():
        loss(RowRandom(7, 0, range(2)), uncond_prob=1.0)
    # targets (rows 0, 1) read their exemplars (rows 2, 3) under the class prior; unconditional rows stay plain
    assert calls == [([-1, -1, -1, -1], "categorical", 4)]
    before = _mean_loss(loss)
    assert calls[-1] == ([2, 3, -1, -1], "categorical", 4)
    options = Stage1Options(unet=PhaseOptions(steps=8, lr=1e-3, log_every=4, checkpoint_every=100),
                            reference_prob=1.0)
    train_structure(pipe, Fixed(source), tmp_path, options, print_fn=quiet)
    assert _mean_loss(loss) < 0.85 * before


def test_stage1_vae_phase_loss_decreasing_and_latent_scale_set(tmp_path):
    pipe = build_pipeline("tiny", seed=0)
    source = WorldScenes(*SIZE, batch_size=2, seed=1)
    batch = source(0)

    def loss(random):
        return vae_loss(pipe.vae, batch["image"], random, kl_weight=1e-6)

    before = _mean_loss(loss)
    options = Stage1Options(unet=PhaseOptions(steps=0, lr=1e-3),
                            vae=PhaseOptions(steps=10, lr=2e-3, log_every=5, checkpoint_every=100))
    train_structure(pipe, Fixed(source), tmp_path, options, print_fn=quiet)
    assert _mean_loss(loss) < 0.85 * before
    latents = pipe.vae.encode(batch["image"]).latent_dist.mean
    assert abs(float(latents.std()) * pipe.vae.config.scaling_factor - 1.0) < 0.05  # unit-variance latents


def _stage1(run_dir, steps):
    pipe = build_pipeline("tiny", seed=0)
    options = Stage1Options(unet=PhaseOptions(steps=steps, lr=1e-3, log_every=1, checkpoint_every=2))
    train_structure(pipe, WorldScenes(*SIZE, batch_size=2, seed=3), run_dir, options, print_fn=quiet)
    return pipe


def test_stage1_resume_continues_from_the_saved_step_exactly(tmp_path):
    straight = _stage1(tmp_path / "straight", 4)
    _stage1(tmp_path / "resumed", 2)  # "interrupted" after its checkpoint at step 2
    printed = []
    pipe = build_pipeline("tiny", seed=0)
    options = Stage1Options(unet=PhaseOptions(steps=4, lr=1e-3, log_every=1, checkpoint_every=2))
    train_structure(pipe, WorldScenes(*SIZE, batch_size=2, seed=3), tmp_path / "resumed", options,
                    print_fn=printed.append)
    assert any("resuming at step 2" in line for line in printed)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / LOG_FILE).read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert latest_checkpoint(tmp_path / "resumed", ("vae", "unet")).step == 4
    for name in ("unet", "structure_encoder", "prompt_embeds"):
        a, b = getattr(straight, name).state_dict(), getattr(pipe, name).state_dict()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=f"{name}.{key}")


def test_resuming_from_a_chosen_checkpoint_discards_the_later_ones(tmp_path):
    _stage1(tmp_path, 6)  # checkpoints at 2, 4, 6; the newest 2 kept
    four = latest_checkpoint(tmp_path, ("vae", "unet")).path.parent / "unet-0000004"
    chosen = resume_point(tmp_path, ("vae", "unet"), four, discard_later=True)
    assert chosen.step == 4 and [c.step for c in list_checkpoints(tmp_path, ("vae", "unet"))] == [4]
    with pytest.raises(FileNotFoundError, match="is not a checkpoint"):
        resume_point(tmp_path, ("vae", "unet"), tmp_path / "nowhere")


def test_stage2_changes_only_the_adapter(tmp_path):
    pipe = build_pipeline("tiny", seed=0)
    before = {name: {k: v.clone() for k, v in module.state_dict().items()}
              for name, module in pipe.components.items() if isinstance(module, torch.nn.Module)}
    printed = []
    options = Stage2Options(adapter=PhaseOptions(steps=3, lr=1e-2, log_every=1, checkpoint_every=3))
    train_adapter(pipe, WorldPairs(*SIZE, batch_size=2, seed=5), tmp_path, options, print_fn=printed.append)
    expected = 3 * encoder_parameter_count(pipe.adapter.config.heads)  # one encoder per block group
    assert any(f"trainable parameters: {expected:,}" in line for line in printed)
    for name, state in before.items():
        after = getattr(pipe, name).state_dict()
        changed = [k for k in state if not torch.equal(state[k], after[k])]
        if name == "adapter":
            assert len(changed) > 0
        else:
            assert changed == [], f"{name} changed: {changed[:3]}"


def test_stage2_loss_decreases_on_a_fixed_batch(tmp_path):
    pipe = build_pipeline("tiny", seed=0)
    source = WorldPairs(*SIZE, batch_size=2, seed=9)
    batch = source(0)
    conditioning = PromptConditioning.from_pipeline(pipe, "cpu")

    def loss(random):
        return adapter_loss(pipe, conditioning, batch, random)

    before = _mean_loss(loss, seeds=2)
    options = Stage2Options(adapter=PhaseOptions(steps=6, lr=1e-2, log_every=3, checkpoint_every=100))
    train_adapter(pipe, Fixed(source), tmp_path, options, print_fn=quiet)
    assert np.isfinite(before) and _mean_loss(loss, seeds=2) < before


def test_world_pairs_share_one_style_on_two_layouts():
    batch = WorldPairs(64, 128, batch_size=3, seed=2)(11)
    assert batch["image"].shape == (3, 3, 64, 128) and batch["exemplar_labels"].shape == (3, 64, 128)
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    for i in range(3):
        target, exemplar = batch["labels"][i].numpy(), batch["exemplar_labels"][i].numpy()
        assert not np.array_equal(target, exemplar)
        same = target == exemplar
        torch.testing.assert_close(batch["image"][i][:, same], batch["exemplar_image"][i][:, same])
    again = WorldPairs(64, 128, batch_size=3, seed=2)(11)
    assert torch.equal(again["image"], batch["image"])  # a batch depends only on (seed, step)


def test_world_v2_sources_keep_the_layouts_and_change_the_appearance():
    for kind in (WorldScenes, WorldPairs):
        v1, v2 = (kind(64, 128, batch_size=2, seed=3, version=v)(5) for v in (1, 2))
        for key in ("labels", "exemplar_labels"):
            if key in v1:
                assert torch.equal(v1[key], v2[key])
        assert (v1["image"] - v2["image"]).abs().mean() > 0.1  # 0.1 in [-1, 1] is about 13 colour units


def test_world_crop_pairs_are_two_windows_drawn_from_the_rows_own_stream():
    source = WorldCropPairs(64, 128, batch_size=2, seed=6)
    batch = source(4)
    for row in range(2):
        stream = np.random.default_rng([6, 4, row])
        pair = crop_pair(int(stream.integers(0, 800_000)), (64, 128), 2, windows=stream)
        np.testing.assert_array_equal(batch["labels"][row].numpy(), pair["target_labels"])
        np.testing.assert_array_equal(batch["exemplar_labels"][row].numpy(), pair["exemplar_labels"])
        expected = torch.from_numpy(np.array(pair["truth"])).permute(2, 0, 1).float() / 127.5 - 1.0
        torch.testing.assert_close(batch["image"][row], expected)
    assert torch.equal(WorldCropPairs(64, 128, batch_size=2, seed=6)(4)["image"], batch["image"])
    # One scene seen again gives other windows (not the benchmark's fixed pair of that scene).
    source.seeds = range(900_007, 900_008)
    rows = [source.sample(step, 0)["labels"] for step in range(3)]
    fixed = crop_pair(900_007)["target_labels"]
    assert not any(np.array_equal(r, fixed) for r in rows) and not np.array_equal(rows[0], rows[1])


def test_pair_mixture_takes_each_row_from_one_source_by_its_own_draw():
    scene, crop = WorldPairs(32, 64, batch_size=16, seed=1), WorldCropPairs(32, 64, batch_size=16, seed=1)
    mixed = PairMixture([scene, crop], [1.0, 1.0], seed=1)
    batch = mixed(2)
    origin = []
    for row in range(16):
        labels = batch["labels"][row].numpy()
        from_scene = np.array_equal(labels, scene.sample(2, row)["labels"])
        from_crop = np.array_equal(labels, crop.sample(2, row)["labels"])
        assert from_scene != from_crop
        origin.append(from_scene)
    assert 0 < sum(origin) < 16
    only_scene = PairMixture([scene, crop], [1.0, 0.0], seed=1)(2)
    assert torch.equal(only_scene["labels"], scene(2)["labels"])
    with pytest.raises(ValueError, match="one batch size"):
        PairMixture([scene, WorldPairs(32, 64, batch_size=2)], [1.0, 1.0])


def test_frame_pairs_are_two_crops_of_one_real_frame():
    load_frame, count = frame_loader(str(CITYSCAPES_ROOT), "cityscapes", "val")
    photo, labels = load_frame(0)
    batch = FrameCropPairs(load_frame, count, 64, 96, batch_size=2, seed=0)(3)
    assert batch["image"].shape == (2, 3, 64, 96) and batch["exemplar_labels"].shape == (2, 64, 96)
    present = set(np.unique(labels))
    for key in ("labels", "exemplar_labels"):
        assert set(np.unique(batch[key].numpy())) <= present
    assert not torch.equal(batch["labels"], batch["exemplar_labels"])


def test_frame_crops_skip_unreadable_frames(tmp_path):
    stems = export_world(tmp_path, 3, split="val", height=32, width=64)
    broken = tmp_path / "leftImg8bit" / "val" / "world" / f"{stems[1]}_leftImg8bit.png"
    broken.write_bytes(broken.read_bytes()[:40])  # truncated photo
    load_frame, count = frame_loader(str(tmp_path), "cityscapes", "val")
    source = FrameCrops(load_frame, count, 32, 64, batch_size=6, max_zoom=1.0, seed=1)
    batch = source(0)
    assert batch["image"].shape == (6, 3, 32, 64)
    assert list(source.skipped) == [1] and "unreadable_image" in source.skipped[1]


def test_cli_stages_write_models_that_load(tmp_path, capsys):
    common = ["--model", "tiny", "--size", "32x64", "--batch-size", "2", "--log-every", "1", "--loader-workers", "0"]
    train_structure_job.main(common + ["--steps", "2", "--vae-steps", "2", "--vae-crop", "16x32",
                                       "--reference-prob", "0.5", "--run-dir", str(tmp_path / "s1"), "--output", str(tmp_path / "m1")])
    structure_model = AMAdapterPipeline.from_pretrained(tmp_path / "m1")
    assert structure_model.vae.config.scaling_factor != 1.0
    train_adapter_job.main(["--model", str(tmp_path / "m1"), "--size", "32x64", "--batch-size", "2",
                            "--loader-workers", "2", "--world-version", "2", "--world-pairs", "mixed",
                            "--steps", "2", "--run-dir", str(tmp_path / "s2"), "--output", str(tmp_path / "m2"),
                            "--save-fp16"])
    assert "trainable parameters" in capsys.readouterr().out
    final = AMAdapterPipeline.from_pretrained(tmp_path / "m2", dtype=torch.float32)
    for name in ("unet", "structure_encoder", "vae"):
        for key, value in getattr(structure_model, name).state_dict().items():
            torch.testing.assert_close(getattr(final, name).state_dict()[key], value.half().float())
    labels = world.layout(900_001, *SIZE)
    image = final([labels], [world.render(labels, world.style(3))], [labels], num_inference_steps=2).images
    assert image.shape == (1, *SIZE, 3) and np.isfinite(image).all()
