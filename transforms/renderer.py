"""``Renderer``: the loaded model behind one small method interface, one model call per batch.

Each distinct exemplar of a batch is passed once, with an assignment of targets to it
(or ``ExemplarRegion``s for a target that reads several), so each exemplar branch runs
once per step for all its targets. After each call the freed heap pages go back to the
OS (``return_freed_memory``).
"""

from __future__ import annotations

import ctypes
from typing import Sequence

import numpy as np
import torch
from diffusers.utils import logging as diffusers_logging

from amadapter.models.attention_processors import DEFAULT_MODE, MODES
from amadapter.pipelines.exemplar_start import DEFAULT_EXEMPLAR_PATH
from amadapter.pipelines.model_factory import trained_size
from amadapter.pipelines.pipeline_amadapter import AMAdapterPipeline
from transforms.synthesis_request import Exemplar, SynthesisRequest, request_regions

# The exemplar modes a job renders with ("none", structure only, would ignore the pool).
JOB_MODES = tuple(mode for mode in MODES if mode != "none")
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def default_dtype(device: str) -> str:
    """float16 on CUDA (half the memory, the tensor cores' type), float32 elsewhere."""
    return "float16" if device.startswith("cuda") else "float32"


class Renderer:
    """The loaded model behind one small method interface, so that with
    ``share_model``/``model_copies`` Beam can proxy it from another process
    (arguments and results are picklable records and arrays)."""

    def __init__(self, pipe: AMAdapterPipeline):
        self._pipe = pipe
        self._pipe.set_progress_bar_config(disable=True)
        self._hash = pipe.model_hash()  # hashed once at load, not inside the first batch

    @classmethod
    def load(cls, directory: str, device: str = "cpu", dtype: str = "float32") -> "Renderer":
        """Load a local checkpoint directory onto ``device`` in ``dtype`` (``TORCH_DTYPES``)."""
        diffusers_logging.set_verbosity_error()  # loader notices are not the job's progress
        diffusers_logging.disable_progress_bar()
        pipe = AMAdapterPipeline.from_pretrained(directory, dtype=TORCH_DTYPES[dtype])
        return cls(pipe.to(device=device))

    def model_hash(self) -> str:
        return self._hash

    def native_size(self) -> tuple[int, int]:
        """The image size the model was trained at (``model_factory.trained_size``)."""
        return trained_size(self._pipe.unet.config, self._pipe.vae.config)

    def render(
        self,
        batch: Sequence[SynthesisRequest],
        steps: int,
        guidance: float,
        size: tuple[int, int],
        exemplar_path: str = DEFAULT_EXEMPLAR_PATH,
        unassigned: str = "first",
        mode: str = DEFAULT_MODE,
    ) -> np.ndarray:
        """One model call for a batch: (B, H, W, 3) uint8 images, in the batch's order.
        Each distinct exemplar is passed once, with an assignment of targets to it."""
        exemplars = distinct_exemplars(batch)
        index = {e.key: i for i, e in enumerate(exemplars)}
        assignment = [
            index[r.exemplar.key]
            if len(r.parts) == 1 and r.parts[0].lent.is_rest
            else request_regions(r, index.__getitem__)
            for r in batch
        ]
        images = self._pipe(
            target_labels=[r.target.record.train_ids for r in batch],
            exemplar_images=[e.image for e in exemplars],
            exemplar_labels=[e.labels for e in exemplars],
            assignment=assignment,
            num_inference_steps=steps,
            guidance_scale=guidance,
            exemplar_path=exemplar_path,
            unassigned=unassigned,
            mode=mode,
            seeds=[r.target.seed for r in batch],
            height=size[0],
            width=size[1],
            output_type="np",
        ).images
        pixels = (np.clip(images, 0.0, 1.0) * 255.0).round().astype(np.uint8)
        return_freed_memory()  # in the process that holds the model (a shared one too)
        return pixels


def distinct_exemplars(batch: Sequence[SynthesisRequest]) -> list[Exemplar]:
    """The batch's exemplars in order of first use, each once."""
    exemplars: dict[str, Exemplar] = {}
    for request in batch:
        for part in request.parts:
            exemplars.setdefault(part.exemplar.key, part.exemplar)
    return list(exemplars.values())


def _libc_malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _libc_malloc_trim()


def return_freed_memory() -> None:
    """Give the heap pages freed by a model call back to the OS (glibc's ``malloc_trim``).

    Each batch allocates tensors of its own shapes (rows = 2 x targets + exemplars)
    and glibc keeps the freed pages, so the resident set grows from shard to shard
    without this call (bench/RESULTS.md measures it over a 320-image run). A no-op
    where the C library is not glibc.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
