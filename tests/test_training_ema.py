"""EMA of the trained weights: saved beside the weights in each checkpoint, restored on
resume, and what the finished model holds."""

import torch
from safetensors.torch import load_file

from amadapter.pipelines.model_factory import build_pipeline
from amadapter.training.checkpoints import latest_checkpoint
from amadapter.training.data import WorldScenes
from amadapter.training.ema import EMA
from amadapter.training.loop import PhaseOptions
from amadapter.training.stage1 import Stage1Options, train_structure


def _train(run_dir, steps, ema_decay=0.8):
    pipe = build_pipeline("tiny", seed=0)
    options = Stage1Options(unet=PhaseOptions(steps=steps, lr=1e-3, log_every=1, checkpoint_every=2,
                                              ema_decay=ema_decay))
    train_structure(pipe, WorldScenes(32, 64, batch_size=2, seed=3), run_dir, options, print_fn=lambda _: None)
    return pipe


def test_ema_is_saved_resumed_and_becomes_the_model(tmp_path):
    straight = _train(tmp_path / "straight", 4)
    checkpoint = latest_checkpoint(tmp_path / "straight", ("vae", "unet"))
    raw = load_file(str(checkpoint.path / "unet.safetensors"))
    averaged = load_file(str(checkpoint.path / "unet.ema.safetensors"))
    assert averaged.keys() == {k for k, p in straight.unet.named_parameters()}
    moved = [k for k in averaged if not torch.equal(averaged[k], raw[k])]
    assert len(moved) == len(averaged)  # the average lags the trained weights
    for key, value in straight.unet.named_parameters():
        assert torch.equal(value.detach(), averaged[key]), key  # the finished model holds the average

    _train(tmp_path / "resumed", 2)
    resumed = _train(tmp_path / "resumed", 4)
    for name in ("unet", "structure_encoder", "prompt_embeds"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_ema_update_follows_the_warmed_up_decay():
    module = torch.nn.Linear(2, 1)
    ema = EMA({"m": module}, decay=0.99)
    start = module.weight.detach().clone()
    with torch.no_grad():
        module.weight.add_(1.0)
    ema.update()  # first update: d = min(0.99, 1/10) = 0.1
    torch.testing.assert_close(ema.shadow["m"]["weight"], 0.1 * start + 0.9 * (start + 1.0))
    with ema.swapped_in():
        torch.testing.assert_close(module.weight.detach(), ema.shadow["m"]["weight"])
    torch.testing.assert_close(module.weight.detach(), start + 1.0)
