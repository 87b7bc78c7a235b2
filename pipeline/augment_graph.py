"""The augment graph: label maps -> exemplar-matched synthesis -> WebDataset shards + manifest.

The SHARD is the unit of determinism, of work and of resume. Stages, in order:

1. ``ReadLabelMaps``: decode the target label maps; unreadable ones become
   ``FailedInput`` rows (they stay inputs: one manifest row each).
2. ``ExpandSamples``: (label map, sample index) -> ``Target`` with a safe key and
   a seed derived from (key, ``--seed``), never from worker order.
3. ``AssignShards`` on all input keys BEFORE synthesis: the shard of an input
   depends only on the key set and ``--shard-size``.
4. ``SkipFinishedShards``: inputs of shards a previous run finished are dropped
   here, so no model work is redone; their manifest rows come from the stats files.
5. Exemplar retrieval for the remaining targets, in batches (the retrieval
   transform, with an index built from ``--exemplars`` at start or ``--index``;
   a seeded draw among the top ``--exemplar-topk`` per target).
6. ``PlanShards``: per shard, sort by (exemplar, key) and cut into batches of at
   most ``--batch-size`` targets, targets of one exemplar together, so a batch
   depends only on its shard's content; read each exemplar once (a bad one fails
   only its targets). One ``ShardWork`` element per shard.
7. ``Reshuffle`` to spread shards over workers before the expensive step.
8. ``RunInference`` with ``SynthesisModelHandler`` (one model per worker process,
   or shared copies on GPU machines; a failed batch becomes ``synthesis_failed``
   rows for its targets) with ``with_exception_handling`` for anything else.
9. ``WriteShardResults``, fused with step 8: each shard's tar is written
   atomically, then its stats file (the commit marker), as soon as the shard is
   rendered. Then ``WriteManifest``: one row per input, written or failed.

Beam metrics (namespace ``augment``): ``inputs``, ``written``, ``failed`` (inputs
= written + failed, always), ``skipped_shards``, ``model_calls``, ``synthesized``,
``failed_batches`` and the distribution ``batch_latency_ms``.
"""

from __future__ import annotations

import dataclasses
import os
import typing

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import RunInference

import amadapter
from amadapter.errors import EmptyPoolError
from pipeline.default_world import POOL_SPLIT, TARGET_SPLIT, export_default_world
from pipeline.exemplar_index import prepare_index
from pipeline.launch_checks import check_launch
from pipeline.options import AugmentOptions
from transforms.expand_samples import ExpandSamples, Target
from transforms.manifest import WriteManifest
from transforms.plan_shards import PlanShards
from transforms.read_label_maps import ReadLabelMaps
from transforms.records import FailedInput
from transforms.retrieve_exemplars import RetrievedTarget, RetrieveExemplars
from transforms.skip_finished import SkipFinishedShards
from transforms.synthesis_handler import (
    METRICS_NAMESPACE,
    SynthesisModelHandler,
    raise_if_run_stopping,
    synthesis_failures,
)
from transforms.synthesis_request import ShardResult
from transforms.write_shard_results import WriteShardResults
from transforms.write_shards import AssignShards

MANIFEST = "manifest.parquet"
DEFAULT_MODEL_DIR = os.path.join(os.path.dirname(amadapter.__file__), "demo_model")
DEFAULT_STEPS = 20  # the paper's; `make demo` takes under a minute with it on 2 CPU cores


@dataclasses.dataclass(frozen=True)
class AugmentInputs:
    """Where the job reads from, after defaults are applied."""

    labels: str
    dataset: str
    split: str | None
    label_format: str | None
    exemplars: str | None
    exemplars_dataset: str
    exemplars_split: str | None
    index: str | None
    model: str
    steps: int


class AugmentGraph(typing.NamedTuple):
    manifest: beam.PCollection  # the manifest path, once written
    inputs: AugmentInputs


def resolve_inputs(options: AugmentOptions) -> AugmentInputs:
    """Apply the defaults: the built-in world when no ``--labels``; the label root itself
    as the pool when neither ``--exemplars`` nor ``--index``; the bundled model;
    ``DEFAULT_STEPS``."""
    model = options.model or DEFAULT_MODEL_DIR
    steps = options.steps or DEFAULT_STEPS
    if options.label_maps is None:
        world = export_default_world(options.output)
        return AugmentInputs(
            labels=world,
            dataset="cityscapes",
            split=TARGET_SPLIT,
            label_format=None,
            exemplars=world,
            exemplars_dataset="cityscapes",
            exemplars_split=POOL_SPLIT,
            index=None,
            model=model,
            steps=steps,
        )
    exemplars = options.exemplars
    if exemplars is None and options.index is None:
        exemplars = options.label_maps
    return AugmentInputs(
        labels=options.label_maps,
        dataset=options.dataset,
        split=options.split,
        label_format=options.label_format,
        exemplars=exemplars,
        exemplars_dataset=options.exemplars_dataset or options.dataset,
        exemplars_split=options.exemplars_split or options.split,
        index=options.index,
        model=model,
        steps=steps,
    )


def build_augment(pipeline: beam.Pipeline, options: AugmentOptions) -> AugmentGraph:
    """Add the augment graph to ``pipeline``; see the module docstring."""
    inputs = resolve_inputs(options)
    size = check_launch(options, inputs)  # LaunchError before any worker starts
    try:
        index_path = prepare_index(
            inputs.index,
            inputs.exemplars,
            inputs.exemplars_dataset,
            inputs.exemplars_split,
            options.output,
            # A folder pool is read with the same --label-format as the label maps.
            inputs.label_format if inputs.exemplars_dataset == "folder" else None,
        )
        pool_error = None
    except EmptyPoolError as error:  # every target fails with it; the run goes on
        index_path, pool_error = None, error
    output, prefix, image_format = options.output, options.shard_prefix, options.image_format

    read = pipeline | "ReadLabelMaps" >> ReadLabelMaps(
        inputs.labels, inputs.dataset, inputs.split, inputs.label_format
    )
    targets = read.records | "ExpandSamples" >> ExpandSamples(
        options.samples_per_label, options.seed
    )
    keyed = (
        (targets, read.failures)
        | "AllInputs" >> beam.Flatten()
        | "CountInputs" >> beam.Map(_count, Metrics.counter(METRICS_NAMESPACE, "inputs"))
        | "AssignShards" >> AssignShards(options.shard_size)
    )
    resume = keyed | "SkipFinishedShards" >> SkipFinishedShards(output, prefix, image_format)
    pending = resume.pending | "SplitPending" >> beam.Partition(
        lambda item, _: 0 if isinstance(item[1], Target) else 1, 2
    )
    pending_targets, pending_failures = pending[0], pending[1]

    shard_of = beam.pvalue.AsDict(
        resume.pending | "ShardOfKey" >> beam.MapTuple(lambda shard, item: (item.key, shard))
    )
    targets_only = pending_targets | "Unkey" >> beam.Values()
    if pool_error is None:
        retrieval = targets_only | "RetrieveExemplars" >> RetrieveExemplars(
            index_path, top_k=options.exemplar_topk
        )
        rekeyed = (retrieval.retrieved, retrieval.failures) | "Retrieved" >> beam.Flatten()
    else:
        rekeyed = targets_only | "NoExemplars" >> beam.Map(  # error code and text: picklable
            lambda t, code, text: FailedInput(t.key, t.source, code, text),
            pool_error.code,
            str(pool_error),
        )
    work = (
        (
            rekeyed
            | "Rekey" >> beam.Map(lambda item, shards: (shards[_key(item)], item), shard_of),
            pending_failures,
        )
        | "PendingByShard" >> beam.Flatten()
        | "PlanShards" >> PlanShards(options.batch_size)
    )
    handler = SynthesisModelHandler(
        model=inputs.model,
        steps=inputs.steps,
        guidance=options.guidance,
        size=size,
        device=options.device,
        dtype=options.dtype,
        torch_threads=options.torch_threads,
        model_copies=options.model_copies,
        share_model=options.share_model,
        accelerator=options.accelerator,
    )
    rendered, dead_letters = (
        work
        | "Spread" >> beam.Reshuffle()
        | "Synthesize" >> RunInference(handler).with_exception_handling()
    )
    writer = WriteShardResults(output, prefix, image_format)
    rows = rendered | "WriteShards" >> beam.ParDo(writer)
    dead_rows = (
        dead_letters.failed_inferences
        | "FailedShards" >> beam.Map(_failed_shard)
        | "WriteFailedShards" >> beam.ParDo(writer)
    )
    manifest = (
        (rows, dead_rows, resume.rows)
        | "AllRows" >> beam.Flatten()
        | "CountRows" >> beam.Map(_count_row)
        | "WriteManifest" >> WriteManifest(FileSystems.join(output, MANIFEST))
    )
    return AugmentGraph(manifest=manifest, inputs=inputs)


def _key(item) -> str:
    """The input key of a retrieval output (``RetrievedTarget`` or ``FailedInput``)."""
    return item.target.key if isinstance(item, RetrievedTarget) else item.key


def _count(element, counter):
    counter.inc()
    return element


_WRITTEN = Metrics.counter(METRICS_NAMESPACE, "written")
_FAILED = Metrics.counter(METRICS_NAMESPACE, "failed")


def _count_row(row: dict) -> dict:
    (_WRITTEN if row["status"] == "written" else _FAILED).inc()
    return row


def _failed_shard(dead_letter) -> ShardResult:
    """``(ShardWork, (exception type, repr, traceback))`` -> the shard with every target failed."""
    work, (error_type, error, _) = dead_letter
    raise_if_run_stopping(error_type, error)
    failures = list(work.failures) + synthesis_failures(work.requests, error)
    return ShardResult(work.shard, (), tuple(failures))
