"""Stage 2: the appearance-matching adapter; every other weight is frozen.

Each batch row is a (target, exemplar) pair whose appearance agrees (one style
on two layouts, or two crops of one frame; ``amadapter.training.data``). Both
are VAE-encoded and noised to the same timestep with independent noise; one
UNet forward runs targets and exemplars together, the targets reading their
exemplar's self-attention states through the adapter
(``exemplar_forward.predict_with_exemplars``), and the loss is the usual noise
prediction on the targets. Gradients reach only phi: the UNet, VAE, structure
encoder and prompt are frozen, and phi sees the attention logits detached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from torch.nn import functional as F

from amadapter.pipelines.exemplar_forward import predict_with_exemplars
from amadapter.training.checkpoints import load_components, resume_point
from amadapter.training.conditioning import PromptConditioning
from amadapter.training.data import RowSource
from amadapter.training.distributed import make_accelerator
from amadapter.training.loop import PhaseOptions, Validation, count_trainable, run_phase
from amadapter.training.noise import RowRandom, diffusion_target
from amadapter.training.stage1 import encode_latents

PHASES = ("adapter",)


@dataclass(frozen=True)
class Stage2Options:
    adapter: PhaseOptions
    max_tokens: int | None = None  # None: the adapter's configured limit
    seed: int = 0
    checkpoint_adapter: bool = False  # recompute the adapter's logits and activations in backward
    resume_from: str | None = None  # a checkpoint directory of the run; None: its latest


def adapter_loss(pipe, conditioning: PromptConditioning, batch: dict, random: RowRandom,
                 max_tokens: int | None = None, mode: str = "am_adapter", beta: float = 5.0) -> torch.Tensor:
    """Noise-prediction loss of targets that read their exemplars through the adapter
    (``mode``: another reading, e.g. ``categorical`` with class prior ``beta``, for
    held-out comparisons: ``bench.heldout_loss``)."""
    device = pipe.unet.device
    target = encode_latents(pipe.vae, batch["image"])
    exemplar = encode_latents(pipe.vae, batch["exemplar_image"])
    n = target.shape[0]
    target_noise = random.randn(*target.shape[1:]).to(target)
    exemplar_noise = random.randn(*exemplar.shape[1:]).to(exemplar)
    timesteps = random.randint(pipe.scheduler.config.num_train_timesteps).to(device)
    with torch.no_grad():
        target_control = pipe.structure_encoder.encode_labels(batch["labels"])
        exemplar_control = pipe.structure_encoder.encode_labels(batch["exemplar_labels"])
        embeds = conditioning.batch(torch.zeros(n, dtype=torch.bool, device=device))
    prediction = predict_with_exemplars(
        pipe.unet,
        pipe.adapter,
        pipe.scheduler.add_noise(target, target_noise, timesteps),
        pipe.scheduler.add_noise(exemplar, exemplar_noise, timesteps),
        timesteps,
        embeds,
        target_control,
        exemplar_control,
        batch["labels"].to(device),
        batch["exemplar_labels"].to(device),
        mode=mode,
        max_tokens=max_tokens,
        beta=beta,
    )
    return F.mse_loss(prediction.float(), diffusion_target(pipe.scheduler, target, target_noise, timesteps).float())


def train_adapter(
    pipe,
    source: RowSource,
    run_dir: str | Path,
    options: Stage2Options,
    accelerator: Accelerator | None = None,
    print_fn: Callable[[str], None] = print,
    validation: Validation | None = None,
):
    """Run (or resume) stage 2 on ``pipe`` in place; returns ``pipe``.

    ``source`` gives pair batches (``image``, ``labels``, ``exemplar_image``,
    ``exemplar_labels``). Prints the trainable parameter count. ``accelerator``:
    this process's (default: one CPU process)."""
    accelerator = accelerator or make_accelerator()
    say = print_fn if accelerator.is_main_process else (lambda _line: None)
    device = accelerator.device
    pipe.to(device)
    conditioning = PromptConditioning.from_pipeline(pipe, device)
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.requires_grad_(False)
            module.eval()
    trainable = {"adapter": pipe.adapter}
    pipe.adapter.requires_grad_(True)
    pipe.adapter.gradient_checkpointing = options.checkpoint_adapter  # read by the attention processors
    latest = resume_point(run_dir, PHASES, options.resume_from, discard_later=accelerator.is_main_process)
    accelerator.wait_for_everyone()
    if latest is not None:
        load_components(latest, trainable)
    say(f"[adapter] trainable parameters: {count_trainable(trainable):,} "
        f"(all other weights frozen: {sum(p.numel() for p in _frozen(pipe)):,})")

    def step_loss(batch: dict, random: RowRandom) -> torch.Tensor:
        return adapter_loss(pipe, conditioning, batch, random, options.max_tokens)

    try:
        run_phase(run_dir, "adapter", trainable, trainable, source, step_loss, options.adapter, accelerator,
                  seed=options.seed, resume_from=latest, phase_order=PHASES, validation=validation,
                  print_fn=print_fn)
    finally:  # the returned (or, on an error, the caller's) pipeline samples without it
        pipe.adapter.gradient_checkpointing = False
    pipe.adapter.requires_grad_(False)
    pipe.adapter.eval()
    return pipe


def _frozen(pipe) -> list[torch.nn.Parameter]:
    return [p for m in pipe.components.values() if isinstance(m, torch.nn.Module)
            for p in m.parameters() if not p.requires_grad]
