"""``SynthesisModelHandler``: the augment job's RunInference ``ModelHandler``.

What the model does lives here (load ``AMAdapterPipeline`` once per worker
process, render pre-formed batches); how Beam schedules it lives in
``RunInference`` (shared models, resource hints, the dead-letter output).

- **One shard per element.** Each element is a ``ShardWork``: one shard's targets
  (references: each batch is decoded right before its model call,
  ``transforms.load_batch``, so a worker holds one batch's pixels), already cut
  into batches by ``transforms.batch_by_exemplar`` from the shard's
  content alone (``should_skip_batching``: RunInference must not re-batch). The
  handler renders the batches one model call each and returns one
  ``ShardResult``, which the next step (fused with this one, no shuffle between)
  writes at once: a finished shard is committed while the run goes on, so a
  crash loses at most the shards in flight. With an element per batch, the
  grouping of samples into shards would need a shuffle after synthesis, which
  batch runners execute only once every batch is rendered.
- **Determinism.** Floats in a batch are row-independent only up to rounding;
  with the company of every target fixed by its shard, image bytes are
  identical across resumed, multi-process and single-process runs.
- **Exemplar sharing.** The distinct exemplars of a batch are passed once each
  with an assignment, so each exemplar branch runs once per step for all its
  targets. A target that reads several exemplars (``--exemplar-map``,
  ``--exemplars-per-target``) passes them as ``ExemplarRegion``s; one that reads one
  exemplar everywhere passes its index, and renders exactly as before.
- **Inversion cache across batches.** The pipeline inverts each exemplar alone
  (a batch of one), so a cached inversion is the same bytes whichever batch
  first needed it; the model's in-memory cache then spares exemplars shared by
  several batches or shards a second inversion in the same worker process.
- **A failed batch** (any exception in its model call) becomes ``FailedInput``
  rows with code ``synthesis_failed`` for its targets; the shard's other batches
  are still written. Such shards are rendered again on resume
  (``transforms.skip_finished``). Anything failing outside a batch goes to
  RunInference's dead-letter output (``with_exception_handling``).
- **Out of memory before any batch succeeded** is not a per-batch failure: every
  batch would fail the same way, so the handler raises ``BatchTooLargeError``
  (naming ``--batch-size``) and the run stops (``raise_if_run_stopping`` on the
  dead-letter path). Out of memory after a success fails that batch only.
- **Dtype**: float16 on cuda unless one is given (``default_dtype``), float32 elsewhere.
- **Remote checkpoints** are copied to a local temporary folder for the load and
  the copy is removed once the weights are in memory.
- **Outputs.** Each sample's label is the target's label map nearest-resized to
  the output size with the pipeline's own resize, so image and label agree
  pixel for pixel.
- **Metrics** (namespace ``augment``): ``model_calls``, ``synthesized`` (targets
  rendered), ``failed_batches`` and the distribution ``batch_latency_ms``.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import logging
import os
import shutil
import tempfile
import time
from typing import Any, Sequence

import numpy as np
import torch
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler
from diffusers.utils import logging as diffusers_logging

from amadapter.io.resize import resize_labels_nearest
from amadapter.pipelines.model_factory import trained_size
from amadapter.pipelines.exemplar_start import DEFAULT_EXEMPLAR_PATH
from amadapter.io.labels import CLASS_NAMES
from amadapter.io.shard_format import SOURCE_META_KEY
from amadapter.pipelines.pipeline_amadapter import AMAdapterPipeline
from transforms.fileio import list_files, open_file
from transforms.records import FailedInput, Sample
from transforms.load_batch import load_batch
from transforms.synthesis_request import (
    Exemplar,
    LentPart,
    ShardResult,
    ShardWork,
    SynthesisRequest,
    request_regions,
)

METRICS_NAMESPACE = "augment"
SYNTHESIS_FAILED = "synthesis_failed"  # FailedInput.error_code of targets whose batch failed
LOG = logging.getLogger("augment")
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class RunStoppingError(RuntimeError):
    """A failure that every later batch would repeat: the run stops instead of
    writing ``synthesis_failed`` rows (see ``raise_if_run_stopping``)."""


class BatchTooLargeError(RunStoppingError):
    """Out of memory in the first model call of a worker: the batch (or size) is too large."""


def default_dtype(device: str) -> str:
    """float16 on CUDA (half the memory, the tensor cores' type), float32 elsewhere."""
    return "float16" if device.startswith("cuda") else "float32"


def raise_if_run_stopping(error_type: type, error: str) -> None:
    """Re-raise a ``RunStoppingError`` that RunInference's dead-letter output caught
    (``error_type``, ``error``: its type and its repr, ``Name('message')``), so that it
    fails the run."""
    if issubclass(error_type, RunStoppingError):
        raise error_type(ast.literal_eval(error[len(error_type.__name__) :]))


class SynthesisModelHandler(ModelHandler[ShardWork, ShardResult, "Renderer"]):
    """Renders ``ShardWork`` elements with an ``AMAdapterPipeline`` checkpoint.

    Args:
        model: checkpoint directory, local or on any Beam file system (copied to a
            local temporary folder on the worker first).
        steps, guidance: DDIM steps and classifier-free guidance.
        size: output (height, width), or None for the model's ``Renderer.native_size``.
        device, dtype: torch device and dtype name (``TORCH_DTYPES``; None: ``default_dtype``).
        torch_threads: intra-op threads of the worker process (None: torch's default).
        model_copies: copies per machine shared across SDK processes (GPU workers);
            None loads one model per process.
        share_model: share one model per machine across processes.
        accelerator: Beam accelerator resource hint, used when ``device`` is cuda.
        exemplar_path: how exemplar rows enter the denoising (``amadapter.pipelines.exemplar_start``).
        unassigned: what target pixels no exemplar region claims read ("first" or "none",
            ``amadapter.pipelines.exemplar_regions``).
    """

    def __init__(
        self,
        model: str,
        steps: int,
        guidance: float,
        size: tuple[int, int] | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        torch_threads: int | None = None,
        model_copies: int | None = None,
        share_model: bool = False,
        accelerator: str | None = None,
        exemplar_path: str = DEFAULT_EXEMPLAR_PATH,
        unassigned: str = "first",
    ):
        super().__init__(model_copies=model_copies, large_model=share_model)
        dtype = dtype or default_dtype(device)
        if dtype not in TORCH_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(TORCH_DTYPES)}, got {dtype!r}")
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        self._model, self._steps, self._guidance = model, steps, guidance
        self._size = tuple(size) if size is not None else None
        self._device, self._dtype, self._accelerator = device, dtype, accelerator
        self._threads = torch_threads
        self._exemplar_path, self._unassigned = exemplar_path, unassigned
        self._rendered_once = False  # has a model call of this handler copy succeeded?
        self._calls = Metrics.counter(METRICS_NAMESPACE, "model_calls")
        self._synthesized = Metrics.counter(METRICS_NAMESPACE, "synthesized")
        self._failed_batches = Metrics.counter(METRICS_NAMESPACE, "failed_batches")
        self._latency = Metrics.distribution(METRICS_NAMESPACE, "batch_latency_ms")

    def load_model(self) -> "Renderer":
        if self._threads is not None:
            torch.set_num_threads(self._threads)
        with local_model_directory(self._model) as directory:
            return Renderer.load(directory, self._device, self._dtype)

    def run_inference(
        self,
        batch: ShardWork,
        model: "Renderer",
        inference_args: dict[str, Any] | None = None,
    ) -> list[ShardResult]:
        """Render one shard (``batch`` is RunInference's name for the element)."""
        size = self._size or model.native_size()
        samples: list[Sample] = []
        failures = list(batch.failures)
        for number, planned in enumerate(batch.batches, 1):
            requests, unusable = load_batch(batch.shard, planned)  # this batch's pixels only
            failures.extend(unusable)
            if not requests:
                continue
            began = time.perf_counter()
            try:
                samples.extend(self._render(requests, model, size))
            except Exception as error:  # noqa: BLE001 - one batch's failure is data, see docstring
                if isinstance(error, torch.cuda.OutOfMemoryError):  # torch.OutOfMemoryError too
                    if not self._rendered_once:
                        raise self._too_large(requests, size) from error
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()  # give the next batch the memory this one held
                LOG.warning("shard %d: a batch of %d failed: %r", batch.shard, len(requests), error)
                self._failed_batches.inc()
                failures.extend(synthesis_failures(requests, repr(error)))
                continue
            elapsed = time.perf_counter() - began
            self._rendered_once = True
            self._calls.inc()
            self._synthesized.inc(len(requests))
            self._latency.update(int(elapsed * 1000))
            LOG.info(
                "shard %d, batch %d/%d: rendered %d targets (%d exemplars) in %.1f s",
                batch.shard,
                number,
                len(batch.batches),
                len(requests),
                len(distinct_exemplars(requests)),
                elapsed,
            )
        return [ShardResult(batch.shard, tuple(samples), tuple(failures))]

    def _too_large(self, batch: Sequence[SynthesisRequest], size) -> BatchTooLargeError:
        exemplars = len(distinct_exemplars(batch))
        return BatchTooLargeError(
            f"out of {self._device} memory in the first model call ({len(batch)} targets and "
            f"{exemplars} exemplars at {size[0]}x{size[1]}, {self._dtype}): every batch would "
            f"fail the same way, so the run stops. Run again with a smaller --batch-size "
            f"(e.g. --batch-size {max(1, len(batch) // 2)})"
            + (" or --dtype float16" if self._device == "cuda" and self._dtype == "float32" else "")
            + "."
        )

    def _render(self, batch: Sequence[SynthesisRequest], model: "Renderer", size) -> list[Sample]:
        pixels = model.render(
            batch, self._steps, self._guidance, size, self._exemplar_path, self._unassigned
        )
        provenance = {
            "model": self._model,
            "model_hash": model.model_hash(),
            "steps": self._steps,
            "guidance": self._guidance,
            "exemplar_path": self._exemplar_path,
            "size": list(size),
            "dtype": self._dtype,
        }
        return [_sample(request, image, size, provenance) for request, image in zip(batch, pixels)]

    def should_skip_batching(self) -> bool:
        return True  # every element already holds its batches (see the module docstring)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def get_resource_hints(self) -> dict:
        if self._device == "cuda" and self._accelerator:
            return {"accelerator": self._accelerator}
        return {}


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
            seeds=[r.target.seed for r in batch],
            height=size[0],
            width=size[1],
            output_type="np",
        ).images
        pixels = (np.clip(images, 0.0, 1.0) * 255.0).round().astype(np.uint8)
        return_freed_memory()  # in the process that holds the model (a shared one too)
        return pixels


def _libc_malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _libc_malloc_trim()


def return_freed_memory() -> None:
    """Give the heap pages freed by a model call back to the OS (glibc's ``malloc_trim``).

    Each batch allocates tensors of its own shapes (rows = 2 x targets + exemplars)
    and glibc keeps the freed pages: in a 320-image run of the demo model, RSS
    between shards rose to 940 MB without this call and stayed at 640 MB with it
    (bench/RESULTS.md). A no-op where the C library is not glibc.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def synthesis_failures(batch: Sequence[SynthesisRequest], error: str) -> list[FailedInput]:
    """One ``FailedInput`` per target of a batch whose model call raised ``error``."""
    return [
        FailedInput(
            r.target.key,
            r.target.source,
            SYNTHESIS_FAILED,
            f"{SYNTHESIS_FAILED}: {r.target.source}: model call failed: {error}",
        )
        for r in batch
    ]


def distinct_exemplars(batch: Sequence[SynthesisRequest]) -> list[Exemplar]:
    """The batch's exemplars in order of first use, each once."""
    exemplars: dict[str, Exemplar] = {}
    for request in batch:
        for part in request.parts:
            exemplars.setdefault(part.exemplar.key, part.exemplar)
    return list(exemplars.values())


def _lent_record(part: LentPart) -> dict:
    """What the sample's json says of one exemplar: which it is and what it lent."""
    lent = part.lent
    if lent.classes is not None:
        lends = {"classes": [CLASS_NAMES[c] for c in lent.classes]}
    elif lent.mask_path is not None:
        lends = {"mask": lent.mask_path}
    else:
        lends = "rest"
    return {
        "key": part.exemplar.key,
        "photo": part.exemplar.photo_path,
        "label": part.exemplar.label_path,
        "score": lent.score,
        "lends": lends,
    }


def _sample(request: SynthesisRequest, image: np.ndarray, size, provenance: dict) -> Sample:
    target = request.target
    labels = torch.from_numpy(target.record.train_ids)[None]
    label = resize_labels_nearest(labels, size)[0].numpy()
    meta = {
        SOURCE_META_KEY: target.source,
        "label_key": target.record.key,
        "sample_index": target.index,
        "seed": target.seed,
        "exemplar": _lent_record(request.parts[0]),  # the primary one, as before
        "exemplars": [_lent_record(part) for part in request.parts],
        "source_size": list(target.record.train_ids.shape),
        **provenance,
    }
    return Sample(target.key, image, label, meta)


@contextlib.contextmanager
def local_model_directory(path: str):
    """``path`` itself when local; else a copy of the remote directory in a local temporary
    folder, removed on exit (once loaded, the weights live in memory)."""
    if FileSystems.get_scheme(path) is None:
        yield path
        return
    local = tempfile.mkdtemp(prefix="amadapter-model-")
    try:
        root = path.rstrip("/") + "/"
        for remote in list_files(root + "**"):
            target = os.path.join(local, remote[len(root) :])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open_file(remote) as source, open(target, "wb") as sink:
                while chunk := source.read(1 << 24):
                    sink.write(chunk)
        yield local
    finally:
        shutil.rmtree(local, ignore_errors=True)
