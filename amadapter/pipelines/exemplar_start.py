"""How an exemplar row enters the lockstep denoising loop: the exemplar paths.

- ``inverted``: the exemplar latent is DDIM-inverted up to the first sampling
  timestep, under the conditions it is then denoised with (its own structure
  guidance and the prompt embedding; unguided, a structure-trained model drifts:
  on the demo model the round-trip colour error was 69 unguided vs 51 guided),
  and then stepped with its own prediction like a target. One extra UNet row per
  step on a cache miss.
- ``noised``: no inversion. At each step the clean exemplar latent is forward-noised
  to that step's level with the call's scheduler and a noise drawn from the
  exemplar's content hash (as reference-only conditioning does), so the exemplar
  row costs nothing beyond its row in the sampling forward.

Both go through the pipeline's ``InversionCache`` (inverted latents, or clean
latents for ``noised``), keyed by the exemplar's content, the weights they depend
on and the conditions, so a hit does no VAE or UNet work.

Determinism. On CPU a row's bytes depend on the batch size it was computed in,
but not on its companions or its place in the batch (tests/test_model_inversion.py
checks the cached inversion against its company). Missing exemplars are therefore inverted in
batches of exactly ``inversion_batch_size`` rows, the last one padded by repeating
a row, and that size is part of the cache key: a cached latent is the same bytes
whichever call first needed it.
"""

from __future__ import annotations

import torch

from amadapter.models.content_hash import tensor_hash
from amadapter.pipelines.inversion import ddim_invert
from amadapter.pipelines.inversion_cache import inversion_key
from amadapter.pipelines.structure_guidance import structure_control

EXEMPLAR_PATHS = ("inverted", "noised")
# noised by default, chosen on the val pairs of the appearance benchmark and on cost:
# inverted is only slightly better there, while the inversion costs one more UNet row per
# step on every cache miss, the job's common case (figures: bench/RESULTS.md, "Sampler");
# the adapter is also trained on forward-noised exemplars (amadapter.training.stage2)
DEFAULT_EXEMPLAR_PATH = "noised"


def exemplar_start_latents(
    pipe,
    images: torch.Tensor,
    labels: torch.Tensor,
    embeds: torch.Tensor,
    scheduler,
    exemplar_path: str = "inverted",
    control_scale: float = 1.0,
    inversion_batch_size: int = 1,
) -> torch.Tensor:
    """Exemplar images (E, 3, H, W) in [-1, 1] and labels (E, H, W) -> (E, C, h, w):
    latents at the first sampling timestep (``inverted``) or clean latents
    (``noised``; noise them per step with ``noised_exemplars``). ``scheduler`` is
    the call's own, set to the sampling steps; ``embeds`` (1, L, D) the prompt."""
    if exemplar_path not in EXEMPLAR_PATHS:
        raise ValueError(f"unknown exemplar_path {exemplar_path!r}; choose one of {EXEMPLAR_PATHS}")
    if inversion_batch_size < 1:
        raise ValueError(f"inversion_batch_size must be at least 1, got {inversion_batch_size}")
    device, dtype = pipe.unet.device, pipe.unet.dtype
    contents = [tensor_hash(image) + tensor_hash(label) for image, label in zip(images, labels)]

    def encode(rows: list[int]) -> torch.Tensor:
        pixels = images[rows].to(device, pipe.vae.dtype)
        return (pipe.vae.encode(pixels).latent_dist.mode() * pipe.vae.config.scaling_factor).to(dtype)

    if exemplar_path == "noised":
        model, conditions = pipe.model_hash(("vae",)), f"clean|{dtype}"
        # one exemplar at a time: its clean latent is the same bytes in any company
        compute = lambda missing: [encode([i])[0] for i in missing]  # noqa: E731
    else:
        steps = len(scheduler.timesteps)
        schedule = f"{type(scheduler).__name__}|{dict(scheduler.config)}|{steps}|{dtype}"
        model = pipe.model_hash(("unet", "vae", "structure_encoder"))  # with the embedding: all it uses
        conditions = f"{schedule}|{tensor_hash(embeds)}|{control_scale}|batch {inversion_batch_size}"

        def compute(missing: list[int]) -> list[torch.Tensor]:
            out = []
            for start in range(0, len(missing), inversion_batch_size):
                chunk = missing[start : start + inversion_batch_size]
                rows = chunk + chunk[-1:] * (inversion_batch_size - len(chunk))  # fixed batch size
                control = pipe.structure_encoder.encode_labels(labels[rows].to(device))
                with structure_control(pipe.unet, control, control_scale):
                    inverted = ddim_invert(pipe.unet, scheduler, encode(rows), embeds.expand(len(rows), -1, -1))
                out.extend(inverted[: len(chunk)])
            return out

    keys = [inversion_key(content, model, conditions) for content in contents]
    latents = pipe.inversion_cache.get_or_compute_many(keys, compute)
    return torch.stack([latent.to(device, dtype) for latent in latents])


def exemplar_noise(images: torch.Tensor, labels: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """One noise tensor per exemplar, (E, *shape), seeded by the exemplar's content
    hash: the same exemplar gets the same noise in any call."""
    noise = []
    for image, label in zip(images, labels):
        seed = int(tensor_hash(image, label)[:15], 16)
        noise.append(torch.randn(shape, generator=torch.Generator().manual_seed(seed)))
    return torch.stack(noise)


def noised_exemplars(scheduler, clean: torch.Tensor, noise: torch.Tensor, timestep) -> torch.Tensor:
    """The clean exemplar latents forward-noised to ``timestep``'s level."""
    t = torch.as_tensor(timestep, device=clean.device).reshape(1).expand(clean.shape[0])
    return scheduler.add_noise(clean, noise.to(clean), t)
