"""``AMAdapterPipeline``: render B target label maps with the appearance of E <= B
exemplar photos.

Batched step layout. Each denoising step is ONE UNet forward over the rows

    [ target-uncond (B) | target-cond (B) | exemplar (E) ]

- target-uncond rows: unconditional prompt, structure guidance from the target's
  labels, plain self-attention (classifier-free guidance then amplifies the
  exemplar's influence).
- target-cond rows: conditional prompt, the target's structure guidance, and
  augmented self-attention reading their assigned exemplar row (with the adapter
  in mode ``am_adapter``).
- exemplar rows: conditional prompt, structure guidance from the exemplar's own
  labels, plain self-attention; their normalised hidden states are what the
  target-cond rows read. Each distinct exemplar has one row, whatever the number
  of targets assigned to it; the exemplar is guided by its conditional pass only.

Targets step with the guided prediction through the call's DDIM scheduler, from
per-target seeded noise. Exemplar rows follow their ``exemplar_path``
(``exemplar_start.py``): ``inverted`` rows start from their DDIM inversion (run
under the same structure guidance and prompt, cached) and step with their own
prediction; ``noised`` rows are the clean exemplar latent forward-noised to each
step's level. Every operation is per row, so a target's image
depends on its labels, exemplar, seed and options, not on the other targets in
the call. Mode ``none`` has no exemplar rows.

Concurrency. One pipeline serves many callers at once (Beam's RunInference shares
a model between a process's threads, and with ``model_copies``/``share_model``
between processes through a proxy whose calls run concurrently). Everything a
call needs travels with the call: its attention plan through
``cross_attention_kwargs``, its structure guidance through a context variable
(``structure_guidance``), its timesteps in its own scheduler copy. The shared
state is read-only weights, a thread-safe inversion cache and a locked hash
memo, so concurrent calls give the same bytes as the same calls made one at a
time. The attention processors are installed once, when the pipeline is made;
a call only reads them. Moving the pipeline (``.to``) changes the shared weights:
do it once, before sharing (a call takes no device or dtype for that reason).

Checkpoint format (``save_pretrained`` / ``from_pretrained``): a directory with
``model_index.json`` and one subfolder per component: ``unet``, ``vae``,
``scheduler``, ``structure_encoder``, ``adapter``, and either ``text_encoder`` +
``tokenizer`` or ``prompt_embeds``. Weights are safetensors only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.utils import BaseOutput
from torch.nn import functional as F
from transformers import CLIPTextModel, CLIPTokenizer

from amadapter.models.attention_processors import DEFAULT_MODE, MODES, NO_SLOT, AugmentedAttention
from amadapter.io.resize import resize_labels_nearest
from amadapter.models.content_hash import tensor_hash, weights_fingerprint, weights_hash
from amadapter.pipelines.exemplar_crop import centred_box, crop
from amadapter.pipelines.exemplar_regions import region_slots
from amadapter.pipelines.exemplar_start import (
    DEFAULT_EXEMPLAR_PATH,
    EXEMPLAR_PATHS,
    exemplar_noise,
    exemplar_start_latents,
    noised_exemplars,
)
from amadapter.pipelines.inversion_cache import InversionCache
from amadapter.io.labels import check_train_ids
from amadapter.models.matcher import AppearanceMatchingAdapter
from amadapter.models.prompt_embeddings import PromptEmbeddings
from amadapter.pipelines.structure_guidance import install_structure_guidance, structure_control
from amadapter.models.structure_encoder import StructureEncoder

DEFAULT_PROMPT = "A photo of a <sks> driving scene"
OUTPUT_TYPES = ("np", "pil", "pt", "latent")


def vae_scale_factor(vae_config) -> int:
    """Pixels per latent along each side, from the VAE's config (a dict or diffusers config)."""
    return 2 ** (len(vae_config["block_out_channels"]) - 1)


def latent_grid(unet_config, vae_config) -> int:
    """Image sizes must be multiples of this, from the components' configs (readable
    without loading weights): every UNet level then has whole tokens."""
    return vae_scale_factor(vae_config) * 2 ** (len(unet_config["block_out_channels"]) - 1)


@dataclass
class AMAdapterPipelineOutput(BaseOutput):
    """``images``: (B, H, W, 3) float32 in [0, 1] for "np", PIL images for "pil",
    (B, 3, H, W) for "pt", latents for "latent"."""

    images: np.ndarray | list[PIL.Image.Image] | torch.Tensor


class AMAdapterPipeline(DiffusionPipeline):
    """Exemplar-based synthesis with structure guidance and the appearance-matching adapter.

    Components: ``unet`` (stock ``UNet2DConditionModel``), ``vae``, ``scheduler``
    (``DDIMScheduler``), ``structure_encoder``, ``adapter``, and either
    ``text_encoder`` + ``tokenizer`` or ``prompt_embeds``.
    ``inversion_cache`` (an ``InversionCache``, in memory by default) may be replaced,
    e.g. by one with a directory.
    """

    model_cpu_offload_seq = "text_encoder->structure_encoder->unet->vae"
    _optional_components = ["text_encoder", "tokenizer", "prompt_embeds"]

    def __init__(
        self,
        unet: UNet2DConditionModel,
        vae: AutoencoderKL,
        scheduler: DDIMScheduler,
        structure_encoder: StructureEncoder,
        adapter: AppearanceMatchingAdapter,
        text_encoder: CLIPTextModel | None = None,
        tokenizer: CLIPTokenizer | None = None,
        prompt_embeds: PromptEmbeddings | None = None,
    ):
        super().__init__()
        if (text_encoder is None) == (prompt_embeds is None) or (text_encoder is None) != (tokenizer is None):
            raise ValueError("give either text_encoder and tokenizer, or prompt_embeds")
        self.register_modules(
            unet=unet,
            vae=vae,
            scheduler=scheduler,
            structure_encoder=structure_encoder,
            adapter=adapter,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            prompt_embeds=prompt_embeds,
        )
        self._attention = AugmentedAttention.of(unet)  # installed here, never during a call
        install_structure_guidance(unet)
        self.inversion_cache = InversionCache()
        self._weight_hashes: dict[tuple[str, ...], tuple[tuple, str]] = {}
        self._hash_lock = threading.Lock()
        # fast tokenizers are not safe for concurrent use ("Already borrowed"); the
        # lock covers tokenisation only, the text encoder runs outside it
        self._tokenizer_lock = threading.Lock()

    def register_modules(self, **kwargs):
        """As diffusers, but our components are recorded under the library name
        "amadapter" (the package exports them), not their module path."""
        super().register_modules(**kwargs)
        for name, module in kwargs.items():
            if module is not None and type(module).__module__.startswith("amadapter."):
                self.register_to_config(**{name: ("amadapter", type(module).__name__)})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load a checkpoint directory (or hub id when the caller allows it); safetensors only."""
        kwargs.setdefault("use_safetensors", True)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    # ----- sizes, hashes, inputs ------------------------------------------------------

    @property
    def vae_scale_factor(self) -> int:
        return vae_scale_factor(self.vae.config)

    @property
    def size_multiple(self) -> int:
        """Image sizes must be multiples of this: every UNet level then has whole tokens."""
        return latent_grid(self.unet.config, self.vae.config)

    def model_hash(self, components: tuple[str, ...] | None = None) -> str:
        """sha256 of the weights of ``components`` (default: all), for provenance and
        the inversion cache; recomputed only when those weights change."""
        if components is None:
            components = tuple(n for n in self.components if isinstance(getattr(self, n), torch.nn.Module))
        modules = {n: getattr(self, n) for n in components}
        fingerprint = weights_fingerprint(*modules.values())
        with self._hash_lock:  # concurrent first calls hash once
            cached = self._weight_hashes.get(components)
            if cached is None or cached[0] != fingerprint:
                cached = self._weight_hashes[components] = (fingerprint, weights_hash(**modules))
            return cached[1]

    def _label_batch(self, labels, name: str, size: tuple[int, int] | None) -> torch.Tensor:
        """List of (H, W) train-ID maps or a (N, H, W) tensor -> (N, h, w) uint8, nearest-resized."""
        maps = [check_train_ids(np.asarray(m), f"{name}[{i}]") for i, m in enumerate(labels)]
        if size is None:
            size = maps[0].shape
        return torch.stack([resize_labels_nearest(torch.from_numpy(m)[None], size)[0] for m in maps])

    def _image_batch(self, images, size: tuple[int, int]) -> torch.Tensor:
        """(H, W, 3) uint8 or [0, 1] float arrays / PIL images -> (N, 3, h, w) in [-1, 1], float32."""
        out = []
        for image in images:
            a = np.asarray(image)
            t = torch.from_numpy(a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32))
            t = t.permute(2, 0, 1)[None]
            if tuple(t.shape[-2:]) != tuple(size):
                t = F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)
            out.append(t[0] * 2 - 1)
        return torch.stack(out)

    def encode_prompt(
        self, prompt: str | None, device, dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cond, uncond) embeddings, each (1, L, D). ``prompt`` needs a text encoder;
        with stored embeddings it must be None."""
        if self.text_encoder is None:
            if prompt is not None:
                raise ValueError("this model stores its prompt embeddings; pass prompt=None")
            stored = self.prompt_embeds
            return stored.cond.detach().to(device, dtype), stored.uncond.detach().to(device, dtype)
        with self._tokenizer_lock:
            tokens = self.tokenizer(
                [prompt if prompt is not None else DEFAULT_PROMPT, ""],
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            )
        embeds = self.text_encoder(tokens.input_ids.to(device))[0].to(dtype)
        return embeds[:1], embeds[1:]

    # ----- exemplar inversion ---------------------------------------------------------

    def new_scheduler(self, num_inference_steps: int, device) -> DDIMScheduler:
        """A scheduler of the call's own, set to ``num_inference_steps``: ``set_timesteps``
        on the shared one would change the timesteps of every concurrent call."""
        scheduler = type(self.scheduler).from_config(self.scheduler.config)
        scheduler.set_timesteps(num_inference_steps, device=device)
        return scheduler

    # ----- sampling -------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        target_labels: Sequence[np.ndarray] | torch.Tensor,
        exemplar_images: Sequence[np.ndarray] | None = None,
        exemplar_labels: Sequence[np.ndarray] | torch.Tensor | None = None,
        assignment: Sequence[int] | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 7.5,
        seeds: Sequence[int] | None = None,
        prompt: str | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        height: int | None = None,
        width: int | None = None,
        mode: str = DEFAULT_MODE,
        unassigned: str = "first",
        exemplar_path: str = DEFAULT_EXEMPLAR_PATH,
        inversion_batch_size: int = 1,
        categorical_beta: float = 5.0,
        adapter_max_tokens: int | None = None,
        control_scale: float = 1.0,
        output_type: str = "np",
        return_dict: bool = True,
    ) -> AMAdapterPipelineOutput | tuple:
        """Render one image per target label map.

        Args:
            target_labels: B train-ID maps (H, W) uint8 (0..18, 255 = ignore), or (B, H, W).
            exemplar_images: E photos (H', W', 3), uint8 or float in [0, 1]; cropped to
                the output's aspect ratio (the largest centred window, ``exemplar_crop``),
                then resized to the output size. Unused (may be None) in mode "none".
            exemplar_labels: E train-ID maps of the exemplars, cropped alike.
            assignment: for each target, the index of its exemplar (0..E-1), or a list
                of ``ExemplarRegion``s: which exemplar lends which classes or painted
                mask (``exemplar_regions``; a target then reads several exemplars,
                each query only the one its pixel is assigned to). Default target
                i -> exemplar i when E == B, all -> 0 when E == 1. Duplicate exemplars
                are merged, so each distinct one runs once per step.
            unassigned: what pixels no region claims read: "first" (the target's first
                exemplar) or "none" (no exemplar, only the target's own tokens).
            num_inference_steps: DDIM steps.
            guidance_scale: classifier-free guidance; <= 1 skips the unconditional rows.
            seeds: one per target (default 0..B-1); each target's noise comes from its
                own generator, so its image does not depend on the rest of the batch.
            prompt: text prompt (text-encoder models; default DEFAULT_PROMPT).
            prompt_embeds / negative_prompt_embeds: (1, L, D) instead of encoding.
            height, width: output size, multiples of ``size_multiple`` (default: the
                first target's size); labels are resized with nearest.
            mode: "none", "augmented", "categorical" or "am_adapter".
            exemplar_path: how exemplar rows start and move (``exemplar_start``):
                "inverted" (DDIM inversion, cached) or "noised" (forward-noised per step).
            inversion_batch_size: missing exemplars are inverted this many at a time
                (padded; part of the cache key, so results do not depend on company).
            categorical_beta: the bias of mode "categorical".
            adapter_max_tokens: override of the adapter's token limit.
            control_scale: structure guidance strength.
            output_type: "np", "pil", "pt" or "latent".
        """
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
        if exemplar_path not in EXEMPLAR_PATHS:
            raise ValueError(f"unknown exemplar_path {exemplar_path!r}; choose one of {EXEMPLAR_PATHS}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"unknown output_type {output_type!r}; choose one of {OUTPUT_TYPES}")
        device, dtype = self.unet.device, self.unet.dtype

        size = (height, width) if height is not None and width is not None else None
        targets = self._label_batch(target_labels, "target_labels", size)
        size = tuple(targets.shape[-2:])
        if size[0] % self.size_multiple or size[1] % self.size_multiple:
            raise ValueError(f"size {size} is not a multiple of {self.size_multiple}")
        b = targets.shape[0]
        seeds = list(range(b)) if seeds is None else list(seeds)
        if len(seeds) != b:
            raise ValueError(f"{len(seeds)} seeds for {b} targets")

        cond, uncond = self.encode_prompt(prompt, device, dtype)
        if prompt_embeds is not None:
            cond = prompt_embeds.to(device, dtype)
        if negative_prompt_embeds is not None:
            uncond = negative_prompt_embeds.to(device, dtype)
        scheduler = self.new_scheduler(num_inference_steps, device)

        if mode == "none":
            ex_images = torch.zeros(0, 3, *size)
            ex_labels = torch.zeros(0, *size, dtype=torch.uint8)
            target_reads, target_slots = torch.full((b,), -1), None
        else:
            ex_images, ex_labels, target_reads, target_slots = self._exemplars(
                exemplar_images, exemplar_labels, assignment, target_labels, unassigned, size
            )
        e = ex_images.shape[0]

        control_t = self.structure_encoder.encode_labels(targets.to(device))
        control_e = self.structure_encoder.encode_labels(ex_labels.to(device)) if e else control_t[:0]
        noised = exemplar_path == "noised"
        ex_latents = ex_clean = ex_noise = None
        if e:
            start = exemplar_start_latents(
                self, ex_images, ex_labels, cond, scheduler, exemplar_path, control_scale, inversion_batch_size
            )
            if noised:
                ex_clean, ex_noise = start, exemplar_noise(ex_images, ex_labels, tuple(start.shape[1:]))
            else:
                ex_latents = start

        h, w = size[0] // self.vae_scale_factor, size[1] // self.vae_scale_factor
        noise = [torch.randn((1, self.unet.config.in_channels, h, w), generator=torch.Generator().manual_seed(int(s)))
                 for s in seeds]
        latents = torch.cat(noise).to(device, dtype) * scheduler.init_noise_sigma

        # rows: [uncond targets (if guided) | cond targets | exemplars]
        guided = guidance_scale > 1.0
        halves = 2 if guided else 1
        first_exemplar = halves * b
        reads = torch.where(target_reads >= 0, target_reads + first_exemplar, -1)
        plain = torch.full((b,) + reads.shape[1:], -1)
        exemplar_row = torch.cat([plain] * (halves - 1) + [reads, torch.full((e,) + reads.shape[1:], -1)])
        row_slots = None
        if target_slots is not None:  # only the cond target rows read; the others have no slots
            none = torch.full((b,) + tuple(size), NO_SLOT, dtype=torch.uint8)
            row_slots = torch.cat([none] * (halves - 1) + [target_slots, none[:e]])
        row_labels = torch.cat([targets] * halves + [ex_labels]).to(device)
        row_control = torch.cat([control_t] * halves + [control_e])
        row_embeds = torch.cat([uncond.expand(b * (halves - 1), -1, -1), cond.expand(b + e, -1, -1)])

        # one plan for the whole loop: C and row indices are computed once per call,
        # not once per step; it reaches the processors as an argument of each forward
        plan = self._attention.plan(
            exemplar_row, mode, (h, w), row_labels, self.adapter, adapter_max_tokens, categorical_beta, row_slots
        )
        with structure_control(self.unet, row_control, control_scale):
            for t in self.progress_bar(scheduler.timesteps):
                if e and noised:
                    ex_latents = noised_exemplars(scheduler, ex_clean, ex_noise, t)
                rows = torch.cat([latents] * halves + ([ex_latents] if e else []))
                out = self.unet(
                    rows, t, encoder_hidden_states=row_embeds, cross_attention_kwargs=plan.attention_kwargs()
                ).sample
                target_out = out[(halves - 1) * b : halves * b]
                if guided:
                    target_out = out[:b] + guidance_scale * (target_out - out[:b])
                latents = scheduler.step(target_out, t, latents).prev_sample
                if e and not noised:  # inverted exemplars step with their own prediction
                    ex_latents = scheduler.step(out[first_exemplar:], t, ex_latents).prev_sample

        images = self._decode(latents, output_type)
        return AMAdapterPipelineOutput(images=images) if return_dict else (images,)

    def _exemplars(self, exemplar_images, exemplar_labels, assignment, target_labels, unassigned: str, size):
        """Distinct exemplars (images (E, 3, H, W), labels (E, H, W)) and, per target,
        the exemplar rows it reads: (B,) indices among them, or, when some target has
        ``ExemplarRegion``s, (B, K) indices (-1 padding) with slot maps (B, H, W)."""
        if exemplar_images is None or exemplar_labels is None:
            raise ValueError("modes other than 'none' need exemplar_images and exemplar_labels")
        images = self._image_batch(_to_aspect(exemplar_images, size), size)
        labels = self._label_batch(_to_aspect(exemplar_labels, size), "exemplar_labels", size)
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} exemplar images but {labels.shape[0]} label maps")
        n, b = images.shape[0], len(target_labels)
        if assignment is None:
            if n not in (1, b):
                raise ValueError(f"give an assignment for {b} targets and {n} exemplars")
            assignment = [0] * b if n == 1 else list(range(b))
        if len(assignment) != b:
            raise ValueError(f"assignment must give each of {b} targets an exemplar in 0..{n - 1}")
        lent, slot_maps = [], []  # per target: the exemplars it reads, and its slot map (or None)
        for i, a in enumerate(assignment):
            if isinstance(a, (int, np.integer)):
                lent.append([int(a)])
                slot_maps.append(None)
            else:
                indices, slots = region_slots(np.asarray(target_labels[i]), list(a), unassigned, f"assignment[{i}]")
                lent.append(indices)
                slot_maps.append(torch.from_numpy(slots))
        if not all(0 <= a < n for indices in lent for a in indices):
            raise ValueError(f"assignment must give each of {b} targets exemplars in 0..{n - 1}")
        # one row per distinct exemplar (by content) that some target uses
        distinct: dict[str, int] = {}
        keep: list[int] = []
        rows = []
        for indices in lent:
            rows.append([])
            for a in indices:
                key = tensor_hash(images[a], labels[a])
                if key not in distinct:
                    distinct[key] = len(keep)
                    keep.append(a)
                rows[-1].append(distinct[key])
        if all(m is None for m in slot_maps):
            return images[keep], labels[keep], torch.tensor([r[0] for r in rows]), None
        width = max(len(r) for r in rows)
        reads = torch.tensor([r + [-1] * (width - len(r)) for r in rows])
        whole = torch.zeros(size, dtype=torch.uint8)  # a plain target reads its one exemplar everywhere
        slots = torch.stack([whole if m is None else resize_labels_nearest(m[None], size)[0] for m in slot_maps])
        return images[keep], labels[keep], reads, slots

    def _decode(self, latents: torch.Tensor, output_type: str):
        if output_type == "latent":
            return latents
        pixels = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        pixels = (pixels.float() / 2 + 0.5).clamp(0, 1)
        if output_type == "pt":
            return pixels
        array = pixels.permute(0, 2, 3, 1).cpu().numpy()
        if output_type == "np":
            return array
        return [PIL.Image.fromarray((a * 255).round().astype(np.uint8)) for a in array]


def _to_aspect(arrays, size: tuple[int, int]) -> list[np.ndarray]:
    """Each (H, W[, C]) array cut to the largest centred window of the output's aspect,
    so that resizing keeps shapes (``exemplar_crop``); arrays of that aspect stay whole."""
    out = []
    for array in arrays:
        a = np.asarray(array)
        out.append(crop(a, centred_box(a.shape[0], a.shape[1], size[1] / size[0])))
    return out
