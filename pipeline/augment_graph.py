"""The augment graph: label maps -> exemplar-matched synthesis -> WebDataset shards + manifest.

The SHARD is the unit of determinism, of work and of resume. Nothing that grows
with the input count is gathered on one worker: elements carry paths, never
decoded pixels, through every shuffle, and carry their shard index along. Stages:

0. On the launcher, before the graph: the render fingerprint
   (``storage.fingerprint``) and the output's finished shards
   (``transforms.skip_finished.survey_output``). A finished shard with another
   fingerprint stops the run here, before any model work
   (``FingerprintMismatchError``); ``--overwrite`` discards the output's shards.
1. ``ReadLabelMaps``: decode and check the target label maps; unreadable ones
   become ``FailedInput`` rows (they stay inputs: one manifest row each); good
   ones go on as their ``LabelSource`` (paths). With ``--exemplar-map``,
   ``ReadExemplarMap`` instead: the map's lines are the inputs, each naming its
   exemplars (a bad line is a ``bad_exemplar_map`` row).
2. ``ExpandSamples``: (label map, sample index) -> ``TargetRef`` with a safe key
   and a seed derived from (key, ``--seed``), never from worker order.
3. ``AssignShards`` (``transforms.assign_shards``) on all input keys BEFORE
   synthesis: hash buckets, per-bucket counts and ranks; keys of finished shards
   keep their shard, other keys fill the free shard indices in order.
4. ``SkipFinishedShards``: inputs of shards a previous run finished are dropped
   here, so no model work is redone.
5. Exemplar retrieval for the remaining targets, in batches, the shard index
   passing through (the retrieval transform, with an index built from
   ``--exemplars`` at start or ``--index``; a seeded draw among the top
   ``--exemplar-topk`` per target, then up to ``--exemplars-per-target`` - 1 more
   lending the classes the first lacks). Targets of an exemplar map skip it.
6. ``PlanShards``: group each shard's inputs into one ``ShardWork`` of
   references, its targets cut into batches of at most ``--batch-size``, targets
   of one exemplar together, so a batch depends only on its shard's content;
   then ``Reshuffle`` the shards over the workers.
7. ``RunInference`` with ``SynthesisModelHandler`` (one model per worker process,
   or shared copies on GPU machines): each batch's label maps and exemplars are
   decoded right before its model call (``transforms.load_batch``: each exemplar
   once; a bad one fails only its targets); a failed call becomes
   ``synthesis_failed`` rows for its targets; ``with_exception_handling`` takes
   anything else.
   With ``--filter-segmenter``, ``FilterSamples`` (``transforms.quality_filter``),
   fused with it, filters each rendered shard's pixels and samples on the same
   worker; its reference losses are measured on the launcher
   (``pipeline.filter_reference``) and are part of the fingerprint.
8. ``WriteShardResults``, fused with step 7: each shard's tar is written
   atomically, then its manifest part, then its stats file (the commit marker,
   with the fingerprint), as soon as the shard is rendered. Then
   ``AssembleManifest``: ``manifest.parquet`` streamed from the parts of every
   finished shard of the output, one row per input, written or failed.

Beam metrics (namespace ``augment``): ``inputs`` (this run's), ``written``,
``failed`` and ``filtered`` (rows of the assembled manifest), ``skipped_shards``,
``model_calls``, ``synthesized``, ``failed_batches``, ``filtered_pixels`` (pixels the
quality filter set to ignore in written samples) and the distribution ``batch_latency_ms``.
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
from amadapter.io.errors import EmptyPoolError
from amadapter.retrieval.store import IndexStore
from pipeline.default_world import POOL_SPLIT, TARGET_SPLIT, export_default_world
from pipeline.exemplar_index import prepare_index
from pipeline.filter_reference import prepare_quality_filter
from pipeline.launch_checks import check_launch
from pipeline.options import AugmentOptions
from transforms.assemble_manifest import AssembleManifest
from transforms.assign_shards import AssignShards
from transforms.expand_samples import ExpandSamples, TargetRef, label_key
from storage.fingerprint import render_fingerprint
from storage.manifest import MANIFEST_FILE
from transforms.plan_shards import PlanShards
from transforms.quality_filter import FilterSamples, QualityFilterSpec
from transforms.read_label_maps import ReadLabelMaps
from storage.records import FailedInput
from storage.unlabelled_pool import PoolLabeller
from transforms.read_exemplar_map import ReadExemplarMap
from transforms.retrieve_exemplars import RetrieveExemplars, RetrievedTarget
from transforms.skip_finished import SkipFinishedShards, survey_output
from transforms.job_metrics import METRICS_NAMESPACE
from transforms.renderer import default_dtype
from transforms.synthesis_failures import raise_if_run_stopping, synthesis_failures
from transforms.synthesis_handler import SynthesisModelHandler
from transforms.synthesis_request import ShardResult
from transforms.write_shard_results import WriteShardResults

MANIFEST = MANIFEST_FILE
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
    exemplar_map: str | None = None  # targets and exemplars from a map file instead
    pool_labels_from: str | None = None  # a segmenter labelling the pool's photos


class AugmentGraph(typing.NamedTuple):
    manifest: beam.PCollection  # the manifest path, once written
    inputs: AugmentInputs


def resolve_inputs(options: AugmentOptions) -> AugmentInputs:
    """Apply the defaults: the built-in world when no ``--labels``; the label root itself
    as the pool when neither ``--exemplars`` nor ``--index``; the bundled model;
    ``DEFAULT_STEPS``."""
    model = options.model or DEFAULT_MODEL_DIR
    steps = options.steps or DEFAULT_STEPS
    if options.exemplar_map is not None:
        return AugmentInputs(
            labels=None,
            dataset=options.dataset,
            split=None,
            label_format=options.label_format,
            exemplars=None,
            exemplars_dataset=options.exemplars_dataset or options.dataset,
            exemplars_split=None,
            index=None,
            model=model,
            steps=steps,
            exemplar_map=options.exemplar_map,
        )
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
            pool_labels_from=options.pool_labels_from,
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
        pool_labels_from=options.pool_labels_from,
    )


class AugmentPlan(typing.NamedTuple):
    """The graph up to synthesis (``plan_augment``)."""

    work: beam.PCollection  # of ShardWork, one per shard to render
    reused: beam.PCollection  # of shard indices finished earlier and kept
    inputs: AugmentInputs
    size: tuple[int, int]  # the output size, checked against the model on the launcher
    fingerprint: dict  # the render fingerprint every shard of the output carries
    quality_filter: QualityFilterSpec | None  # None without --filter-segmenter
    pool_labels: dict | None  # who predicted the exemplars' label maps; None: the pool's own


def plan_augment(pipeline: beam.Pipeline, options: AugmentOptions) -> AugmentPlan:
    """Steps 1 to 6 of the module docstring; checks the options, inputs and output on
    the launcher first (``LaunchError``, ``FingerprintMismatchError``)."""
    inputs = resolve_inputs(options)
    size = check_launch(options, inputs)  # LaunchError before any worker starts
    output, prefix = options.output, options.shard_prefix
    labeller = PoolLabeller.of(inputs.pool_labels_from) if inputs.pool_labels_from else None
    pool_labels = _pool_labels(inputs, labeller)
    quality_filter = prepare_quality_filter(options, inputs, size, pool_labels)
    fingerprint = render_fingerprint(
        model=inputs.model,
        steps=inputs.steps,
        guidance=options.guidance,
        size="{}x{}".format(*size),
        seed=options.seed,
        dtype=options.dtype or default_dtype(options.device),
        image_format=options.image_format,
        exemplar_topk=options.exemplar_topk,
        exemplars_per_target=options.exemplars_per_target,
        unassigned=options.unassigned,
        exemplar_path=options.exemplar_path,
        mode=options.mode,
        exemplar_pool=_pool_identity(options, inputs),
        quality_filter=quality_filter.fingerprint() if quality_filter else None,
        pool_labels=pool_labels,
    )
    state = survey_output(output, prefix, fingerprint, overwrite=options.overwrite)
    if inputs.exemplar_map is not None:
        read = pipeline | "ReadExemplarMap" >> ReadExemplarMap(
            inputs.exemplar_map, inputs.dataset, inputs.label_format
        )
        index_path, pool_error = None, None
    else:
        read = pipeline | "ReadLabelMaps" >> ReadLabelMaps(
            inputs.labels, inputs.dataset, inputs.split, inputs.label_format, decoded=False
        )
        index_path, pool_error = _prepare_pool(inputs, output, labeller)
    targets = read.records | "ExpandSamples" >> ExpandSamples(
        options.samples_per_label, options.seed
    )
    keyed = (
        (targets, read.failures)
        | "AllInputs" >> beam.Flatten()
        | "CountInputs" >> beam.Map(_count, Metrics.counter(METRICS_NAMESPACE, "inputs"))
        | "AssignShards" >> AssignShards(options.shard_size, state.finished, group=label_key)
    )
    resume = keyed | "SkipFinishedShards" >> SkipFinishedShards(state.reusable)
    pending = resume.pending | "SplitPending" >> beam.Partition(
        lambda item, _: 0 if isinstance(item[1], TargetRef) else 1, 2
    )
    pending_targets, pending_failures = pending[0], pending[1]
    if inputs.exemplar_map is not None:
        retrieved = pending_targets | "MappedExemplars" >> beam.MapTuple(
            lambda shard, target: (shard, RetrievedTarget(target, target.lent))
        )
    elif pool_error is None:
        retrieval = pending_targets | "RetrieveExemplars" >> RetrieveExemplars(
            index_path, top_k=options.exemplar_topk, exemplars_per_target=options.exemplars_per_target
        )
        retrieved = (retrieval.retrieved, retrieval.failures) | "Retrieved" >> beam.Flatten()
    else:
        retrieved = pending_targets | "NoExemplars" >> beam.Map(  # code and text: picklable
            _without_exemplar, pool_error.code, str(pool_error)
        )
    work = (
        (retrieved, pending_failures)
        | "PendingByShard" >> beam.Flatten()
        | "PlanShards" >> PlanShards(options.batch_size)
    )
    return AugmentPlan(
        work=work,
        reused=resume.reused,
        inputs=inputs,
        size=size,
        fingerprint=fingerprint,
        quality_filter=quality_filter,
        pool_labels=pool_labels,
    )


def build_augment(pipeline: beam.Pipeline, options: AugmentOptions) -> AugmentGraph:
    """Add the augment graph to ``pipeline``; see the module docstring."""
    plan = plan_augment(pipeline, options)
    inputs, output, prefix = plan.inputs, options.output, options.shard_prefix
    handler = SynthesisModelHandler(
        model=inputs.model,
        steps=inputs.steps,
        guidance=options.guidance,
        size=plan.size,
        device=options.device,
        dtype=options.dtype,
        torch_threads=options.torch_threads,
        model_copies=options.model_copies,
        share_model=options.share_model,
        accelerator=options.accelerator,
        exemplar_path=options.exemplar_path,
        unassigned=options.unassigned,
        exemplar_labels=plan.pool_labels,
        mode=options.mode,
    )
    synthesize = RunInference(handler).with_exception_handling()
    rendered, dead_letters = plan.work | "Synthesize" >> synthesize
    rendered = rendered | "StopIfRunStopping" >> beam.Map(raise_if_run_stopping)
    if plan.quality_filter is not None:
        rendered = rendered | "FilterSamples" >> beam.ParDo(FilterSamples(plan.quality_filter))
    writer = WriteShardResults(output, prefix, options.image_format, plan.fingerprint)
    written = rendered | "WriteShards" >> beam.ParDo(writer)
    dead_written = (
        dead_letters.failed_inferences
        | "FailedShards" >> beam.Map(_failed_shard)
        | "WriteFailedShards" >> beam.ParDo(writer)
    )
    assemble = AssembleManifest(output, prefix, FileSystems.join(output, MANIFEST))
    manifest = (
        (written, dead_written, plan.reused)
        | "ShardsDone" >> beam.Flatten()
        | "AssembleManifest" >> assemble
    )
    return AugmentGraph(manifest=manifest, inputs=inputs)


def _prepare_pool(
    inputs: AugmentInputs, output: str, labeller: PoolLabeller | None
) -> tuple[str | None, EmptyPoolError | None]:
    """(the index to query, None), or (None, the error) for an empty pool: every target
    then fails with it and the run goes on."""
    try:
        index_path = prepare_index(
            inputs.index,
            inputs.exemplars,
            inputs.exemplars_dataset,
            inputs.exemplars_split,
            output,
            # A folder pool is read with the same --label-format as the label maps.
            inputs.label_format if inputs.exemplars_dataset == "folder" else None,
            labeller,
        )
    except EmptyPoolError as error:
        return None, error
    return index_path, None


def _pool_labels(inputs: AugmentInputs, labeller: PoolLabeller | None) -> dict | None:
    """Who predicts (``labeller``) or predicted (for an ``--index``) the exemplars' label
    maps; None for the pool's own maps. Read on the launcher: the fingerprint, the quality
    filter's reference rule and every sample use it."""
    if labeller is not None:
        return labeller.provenance()
    if inputs.index is not None:
        return IndexStore(inputs.index).pool_labels()
    return None


def _pool_identity(options: AugmentOptions, inputs: AugmentInputs) -> str:
    """The exemplar pool as the user named it (``storage.fingerprint``)."""
    if inputs.exemplar_map is not None:
        return f"exemplar map {inputs.exemplar_map}"  # appended lines are new inputs
    if options.label_maps is None:
        return "the built-in world"  # exported under the output, wherever it is
    if inputs.index is not None:
        return f"index {inputs.index}"
    return (
        f"exemplars {inputs.exemplars} dataset={inputs.exemplars_dataset} "
        f"split={inputs.exemplars_split} label_format={options.label_format}"
    )


def _without_exemplar(item: tuple, code: str, text: str) -> tuple:
    """``(shard, TargetRef)`` of a run with an empty pool -> ``(shard, FailedInput)``."""
    shard, target = item
    return shard, FailedInput(target.key, target.source, code, text)


def _count(element, counter):
    counter.inc()
    return element


def _failed_shard(dead_letter) -> ShardResult:
    """``(ShardWork, (exception type, repr, traceback))`` -> the shard with every target failed
    (an exception outside a batch's model call: the handler turns those into rows itself)."""
    work, (_, error, _) = dead_letter
    failures = list(work.failures) + synthesis_failures(work.requests, error)
    return ShardResult(work.shard, (), tuple(failures))
