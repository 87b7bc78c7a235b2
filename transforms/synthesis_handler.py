"""``SynthesisModelHandler``: the augment job's RunInference ``ModelHandler``.

The handler loads the model (a ``transforms.renderer.Renderer``, once per worker
process) and runs a shard's pre-formed batches through it, one model call each; the
samples are built by ``transforms.sample_building``, failed calls become rows by
``transforms.synthesis_failures``. How Beam schedules it lives in ``RunInference``
(shared models, resource hints, the dead-letter output).

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
  batch would fail the same way, so the handler returns a ``BatchTooLargeError``
  (naming ``--batch-size``) as the shard's ``stop`` and the graph's next step raises
  it (``transforms.synthesis_failures``). Out of memory after a success fails that
  batch only.
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

import logging
import time
from typing import Any, Sequence

import torch
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler

from amadapter.pipelines.exemplar_start import DEFAULT_EXEMPLAR_PATH
from storage.fileio import local_model_directory
from storage.records import Sample
from transforms.job_metrics import METRICS_NAMESPACE
from transforms.load_batch import load_batch
from transforms.renderer import DEFAULT_MODE, TORCH_DTYPES, Renderer, default_dtype, distinct_exemplars
from transforms.sample_building import build_sample
from transforms.synthesis_failures import BatchTooLargeError, synthesis_failures
from transforms.synthesis_request import ShardResult, ShardWork, SynthesisRequest

LOG = logging.getLogger("augment")


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
        mode: how targets read their exemplars (``transforms.renderer.JOB_MODES``).
        exemplar_labels: who predicted the exemplars' label maps (``--pool-labels-from``:
            ``storage.unlabelled_pool.PoolLabeller.provenance``), recorded in every sample's
            json as ``exemplar_labels``; None (the pool's own maps) records nothing.
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
        exemplar_labels: dict | None = None,
        mode: str = DEFAULT_MODE,
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
        self._exemplar_labels = exemplar_labels
        self._mode = mode
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
                    if not self._rendered_once:  # a value, not an exception (synthesis_failures)
                        return [ShardResult(batch.shard, (), (), stop=self._too_large(requests, size))]
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
            batch, self._steps, self._guidance, size, self._exemplar_path, self._unassigned, self._mode
        )
        provenance = {
            "model": self._model,
            "model_hash": model.model_hash(),
            "steps": self._steps,
            "guidance": self._guidance,
            "exemplar_path": self._exemplar_path,
            "mode": self._mode,
            "size": list(size),
            "dtype": self._dtype,
        }
        if self._exemplar_labels is not None:
            provenance["exemplar_labels"] = {"predicted": True, **self._exemplar_labels}
        return [build_sample(request, image, size, provenance) for request, image in zip(batch, pixels)]

    def should_skip_batching(self) -> bool:
        return True  # every element already holds its batches (see the module docstring)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def get_resource_hints(self) -> dict:
        if self._device == "cuda" and self._accelerator:
            return {"accelerator": self._accelerator}
        return {}
