"""Stage 1: structure guidance (and, for a model trained from scratch, its VAE).

Phases, in order, each resumable:

- ``vae`` (only when asked, i.e. for a from-scratch small model): the
  autoencoder learns to reconstruct photos (L1 + MSE + a small KL term, on random
  crops; the demo VAE is fully convolutional). Afterwards its
  ``scaling_factor`` is set to 1 / std of its latents, as Stable Diffusion's is.
- ``unet``: the structure encoder trains and the UNet is fine-tuned (or, with
  ``train_unet=False``, kept frozen) with the noise-prediction loss: the
  structure-guided UNet (``structure_guidance.unet_with_control``) predicts the
  scheduler's ``prediction_type`` target (epsilon, v or sample) of noised
  latents. Prompt embeddings are dropped to the unconditional embedding with
  probability ``uncond_prob`` so classifier-free guidance works; stored prompt
  embeddings (models without a text encoder) train with the UNet.

  With ``reference_prob > 0`` the UNet phase trains on pairs (a target and an
  exemplar of the same appearance, as stage 2 uses) and also learns to *use*
  an exemplar: the exemplar joins the batch as a plain row at the target's
  timestep, and each conditional target reads its self-attention states with
  probability ``reference_prob``, under the categorical class prior
  (``reference_beta``). A UNet trained from scratch otherwise never learns to
  take appearance from what its self-attention reads: on the demo model
  without it, even the ground-truth photo as exemplar with every query sent to
  same-class exemplar tokens moved the colour error only from 125 to 94
  (bench.appearance metric). Stable Diffusion brings that ability from
  pretraining; leave it at 0 there. The prior only does the matching here;
  learning to match is the adapter's job in stage 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from torch.nn import functional as F

from amadapter.pipelines.exemplar_forward import unet_rows
from amadapter.pipelines.structure_guidance import unet_with_control
from amadapter.training.checkpoints import load_components, resume_point
from amadapter.training.conditioning import PromptConditioning
from amadapter.training.data import RowSource
from amadapter.training.distributed import make_accelerator
from amadapter.training.loop import PhaseOptions, Validation, count_trainable, run_phase
from amadapter.training.noise import RowRandom, diffusion_target

PHASES = ("vae", "unet")


@dataclass(frozen=True)
class Stage1Options:
    unet: PhaseOptions
    vae: PhaseOptions | None = None  # None: the VAE is pretrained and stays frozen
    vae_crop: tuple[int, int] | None = None  # (h, w) random crop for VAE steps; None: whole images
    vae_kl_weight: float = 1e-6
    vae_mse_weight: float = 1.0  # L1 alone settled on a constant (median) green channel
    vae_scale_batches: int = 8  # batches used to measure the latent std afterwards
    uncond_prob: float = 0.1
    reference_prob: float = 0.0  # > 0: pair batches, targets read their exemplar (see module docstring)
    reference_beta: float = 10.0
    train_unet: bool = True
    seed: int = 0
    resume_from: str | None = None  # a checkpoint directory of the run; None: its latest


def vae_loss(vae, images: torch.Tensor, random: RowRandom, kl_weight: float,
             mse_weight: float = 1.0) -> torch.Tensor:
    posterior = vae.encode(images).latent_dist
    noise = random.randn(*posterior.mean.shape[1:]).to(posterior.mean)
    latents = posterior.mean + posterior.std * noise
    reconstruction = vae.decode(latents).sample
    reconstruction, images = reconstruction.float(), images.float()
    return (F.l1_loss(reconstruction, images) + mse_weight * F.mse_loss(reconstruction, images)
            + kl_weight * posterior.kl().mean())


def random_crop(images: torch.Tensor, crop: tuple[int, int] | None, generator: torch.Generator) -> torch.Tensor:
    if crop is None or tuple(crop) == tuple(images.shape[-2:]):
        return images
    h, w = crop
    top = int(torch.randint(images.shape[-2] - h + 1, (1,), generator=generator))
    left = int(torch.randint(images.shape[-1] - w + 1, (1,), generator=generator))
    return images[..., top:top + h, left:left + w]


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor) -> torch.Tensor:
    """Photos in [-1, 1] -> scaled latents (the posterior mean, as the sampler's inversion uses)."""
    latents = vae.encode(images.to(vae.device, vae.dtype)).latent_dist.mean
    return latents * vae.config.scaling_factor


@torch.no_grad()
def measure_vae_scale(vae, source: RowSource, batches: int) -> float:
    """1 / std of unscaled latents over ``batches`` batches (steps beyond training's)."""
    latents = [
        vae.encode(source(10**9 + i)["image"].to(vae.device, vae.dtype)).latent_dist.mean.float()
        for i in range(batches)
    ]
    return float(1.0 / torch.cat(latents).std())


def structure_loss(pipe, conditioning: PromptConditioning, batch: dict, random: RowRandom,
                   uncond_prob: float, reference_prob: float = 0.0, reference_beta: float = 10.0) -> torch.Tensor:
    """Noise-prediction loss of the structure-guided UNet on one batch.

    With ``reference_prob > 0`` the batch holds pairs; exemplar rows train too
    (plain), and reading targets attend to their exemplar (module docstring).
    A pair's exemplar draws from its target's row generator, after it."""
    device = pipe.unet.device
    images, labels = batch["image"], batch["labels"]
    b = images.shape[0]
    if reference_prob > 0:
        images = torch.cat([images, batch["exemplar_image"]])
        labels = torch.cat([labels, batch["exemplar_labels"]])
    latents = encode_latents(pipe.vae, images)
    n = latents.shape[0]
    per_row = n // b  # 1, or 2 with pairs: [targets; exemplars]

    def rows_first(x: torch.Tensor) -> torch.Tensor:  # (b, per_row, ...) -> (n, ...), targets first
        return x.transpose(0, 1).reshape(n, *x.shape[2:])

    noise = rows_first(random.randn(per_row, *latents.shape[1:])).to(latents)
    steps = pipe.scheduler.config.num_train_timesteps
    # a target and its exemplar share the timestep, as they do in lockstep sampling
    timesteps = random.randint(steps).repeat(per_row).to(device)
    noisy = pipe.scheduler.add_noise(latents, noise, timesteps)
    drop = rows_first(random.rand(per_row)) < uncond_prob
    embeds = conditioning.batch(drop.to(device))
    control = pipe.structure_encoder.encode_labels(labels)
    if reference_prob > 0:
        # unconditional rows stay plain, as classifier-free guidance samples them
        reads = (random.rand() < reference_prob) & ~drop[:b]
        exemplar_row = torch.cat([torch.where(reads, torch.arange(b, 2 * b), -1), torch.full((b,), -1)])
        prediction = unet_rows(pipe.unet, noisy, timesteps, embeds, control, exemplar_row, "categorical",
                               labels=labels.to(device), beta=reference_beta)
    else:
        prediction = unet_with_control(pipe.unet, noisy, timesteps, embeds, control)
    target = diffusion_target(pipe.scheduler, latents, noise, timesteps)
    return F.mse_loss(prediction.float(), target.float())


def train_structure(
    pipe,
    source: RowSource,
    run_dir: str | Path,
    options: Stage1Options,
    accelerator: Accelerator | None = None,
    print_fn: Callable[[str], None] = print,
    validation: Validation | None = None,
):
    """Run (or resume) stage 1 on ``pipe`` in place; returns ``pipe``.

    ``source`` gives batches with ``image`` and ``labels``
    (``amadapter.training.data``), and the pair fields too when
    ``options.reference_prob > 0`` (used by the UNet phase; the VAE phase takes
    the targets). Checkpoints and ``loss.jsonl`` go to ``run_dir``.
    ``accelerator``: this process's (``distributed.make_accelerator``; default: one
    CPU process). ``validation`` scores the UNet phase every ``validate_every`` steps."""
    accelerator = accelerator or make_accelerator()
    say = print_fn if accelerator.is_main_process else (lambda _line: None)
    device = accelerator.device
    pipe.to(device)
    conditioning = PromptConditioning.from_pipeline(pipe, device)
    saved = {"structure_encoder": pipe.structure_encoder}
    if options.train_unet:
        saved["unet"] = pipe.unet
    if conditioning.trainable is not None:
        saved["prompt_embeds"] = conditioning.trainable
    if options.vae is not None:
        saved["vae"] = pipe.vae
    latest = resume_point(run_dir, PHASES, options.resume_from, discard_later=accelerator.is_main_process)
    accelerator.wait_for_everyone()
    if latest is not None:
        load_components(latest, saved)
        if "vae_scaling_factor" in latest.extra:
            pipe.vae.register_to_config(scaling_factor=latest.extra["vae_scaling_factor"])
    for module in (pipe.vae, pipe.unet, pipe.structure_encoder, *conditioning.frozen_modules):
        module.requires_grad_(False)

    if options.vae is not None and (latest is None or latest.phase == "vae"):
        pipe.vae.requires_grad_(True)
        say(f"[vae] trainable parameters: {count_trainable({'vae': pipe.vae}):,}")

        def vae_step(batch: dict, random: RowRandom) -> torch.Tensor:
            images = random_crop(batch["image"], options.vae_crop, random.shared()).to(device)
            return vae_loss(pipe.vae, images, random, options.vae_kl_weight, options.vae_mse_weight)

        run_phase(run_dir, "vae", {"vae": pipe.vae}, saved, source, vae_step, options.vae, accelerator,
                  seed=options.seed, resume_from=latest if latest is not None and latest.phase == "vae" else None,
                  phase_order=PHASES, print_fn=print_fn)
        pipe.vae.requires_grad_(False)
        pipe.vae.register_to_config(scaling_factor=measure_vae_scale(pipe.vae, source, options.vae_scale_batches))
        say(f"[vae] latent scaling factor {pipe.vae.config.scaling_factor:.4f}")
        latest = None
    pipe.vae.eval()

    trainable = {"structure_encoder": pipe.structure_encoder}
    if options.train_unet:
        trainable["unet"] = pipe.unet
    if conditioning.trainable is not None:
        trainable["prompt_embeds"] = conditioning.trainable
    for module in trainable.values():
        module.requires_grad_(True)
    say(f"[unet] trainable parameters: {count_trainable(trainable):,}")

    def unet_step(batch: dict, random: RowRandom) -> torch.Tensor:
        return structure_loss(pipe, conditioning, batch, random, options.uncond_prob,
                              options.reference_prob, options.reference_beta)

    run_phase(run_dir, "unet", trainable, saved, source, unet_step, options.unet, accelerator, seed=options.seed,
              resume_from=latest if latest is not None and latest.phase == "unet" else None,
              phase_order=PHASES, extra=lambda: {"vae_scaling_factor": pipe.vae.config.scaling_factor},
              validation=validation, print_fn=print_fn)
    for module in trainable.values():
        module.requires_grad_(False)
    pipe.unet.eval()
    pipe.structure_encoder.eval()
    return pipe
