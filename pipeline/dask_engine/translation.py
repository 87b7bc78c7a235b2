"""A Beam graph as a dask task graph, for ``pipeline.dask_engine.runner.DaskRunner``.

Beam 2.77's own translation (``apache_beam.runners.dask.transform_evaluator`` and the
visitor in ``dask_runner``) loses or duplicates data in ways that break this job. What
this module does instead, point by point:

- **Tagged outputs.** Beam keeps one bag per transform and drops the output tags, so
  every output of a multi-output ParDo (``with_outputs``, ``Partition``, RunInference's
  dead letters) holds ALL the elements the DoFn emitted. ``ReadLabelMaps``' failures
  then held every source and every decoded label map again, and ``AssignShards`` saw
  each key twice (``duplicate sample key``). Here a ParDo's task returns ``(tag, value)``
  pairs and each output PCollection keeps its own tag.
- **finish_bundle.** Beam takes a bundle's output before calling ``finish_bundle``, so
  what a DoFn emits there (e.g. ``BatchElements``' last batch) is lost. Taken after it here.
- **Side inputs.** Beam gives each task a bag that the task computes again, with its
  whole upstream graph, once per partition. Here a side input is one graph node,
  computed once and passed to every task that reads it.
- **Reshuffle.** A no-op in Beam, and a ``Create`` makes one partition below 128
  elements, so a job that starts from one element (a root folder) runs as a single
  task at a time on a single worker. Here a Reshuffle splits its input into ``spread``
  partitions, which the scheduler places on any worker.
- **Sinks.** Beam computes only the last transform's bag; a sink elsewhere in the graph
  never runs. ``sinks`` here counts every PCollection that nothing consumes.
- **Fusion.** dask.bag's blockwise fusion copies a step with two consumers into both, so
  it runs twice (SkipFinishedShards ran again after the shards were written: the
  manifest held their rows twice). Here every step is its own task, except chains of
  ParDos whose links have one consumer each, fused into one task as Beam runners do.
- **DoFn lifecycle.** Beam sets up and tears down a DoFn per partition (a model load per
  task). Here a worker process keeps its set-up DoFn instances for the run and reuses
  them, one bundle at a time each, as Beam's own workers do.
- **Metrics and progress.** Beam's DaskRunner collects no metrics and the job's log lines
  stay in the workers. Each bundle here sends its metric updates, and the records of the
  loggers named in ``forward_loggers``, to the scheduler's event log
  (``metrics_topic``/``log_topic``), read by ``pipeline.dask_engine.runner``.

Only the global window is supported, as in Beam's translation (the augment job uses no other).
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
import logging
import os
import pickle
import threading
import typing

import apache_beam as beam
import cloudpickle
import dask
from dask.base import tokenize
from apache_beam.metrics.execution import MetricsContainer
from apache_beam.pipeline import PipelineVisitor
from apache_beam.runners.common import (
    DoFnContext,
    DoFnInvoker,
    DoFnSignature,
    Receiver,
    _OutputHandler,
)
from apache_beam.runners.dask.overrides import _Create, _Reshuffle
from apache_beam.runners.worker import statesampler
from apache_beam.transforms.sideinputs import SideInputMap
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils.counters import CounterFactory
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

CREATE_PARTITION_SIZE = 128  # Beam's default for a Create (dask chunks of ~10-100 MB)


def metrics_topic(run: str) -> str:
    return f"{run}-metrics"


def log_topic(run: str) -> str:
    return f"{run}-log"


@dataclasses.dataclass
class DaskGraph:
    sinks: list  # of Delayed: one count per PCollection that nothing consumes
    partitions: dict  # PCollection -> list of Delayed, each a list of values


def translate(
    pipeline: beam.Pipeline,
    run: str,
    spread: int,
    create_partitions: int | None = None,
    forward_loggers: tuple[str, ...] = (),
    workers: tuple[str, ...] = (),
) -> DaskGraph:
    """The task graph of ``pipeline`` (after ``pipeline.dask_engine.runner``'s overrides).

    ``run`` names this run on the cluster (task keys, event topics, DoFn reuse);
    ``spread`` is the partition count after a Reshuffle, and the most a GroupByKey
    makes; ``create_partitions`` (``--dask_npartitions``) the partition count of a
    ``Create``, else one per ``CREATE_PARTITION_SIZE`` elements. ``workers`` (the
    cluster's worker addresses when the job is submitted) receive a Reshuffle's pieces
    in turn, as a preference: a dead or busy worker's pieces run elsewhere.
    """
    consumers = _Consumers()
    pipeline.visit(consumers)
    visitor = _Translator(run, spread, create_partitions, forward_loggers, consumers.of, workers)
    pipeline.visit(visitor)
    sinks = [
        dask.delayed(_count)(
            *visitor.parts(pcoll),
            dask_key_name=f"{run}/{pcoll.producer.full_label}/{pcoll.tag}/count",
        )
        for pcoll in list(visitor.partitions)
        if not consumers.of.get(pcoll)
    ]
    return DaskGraph(sinks=sinks, partitions=visitor.partitions)


class _Consumers(PipelineVisitor):
    """PCollection -> [(consuming node, as its main input?)]."""

    def __init__(self):
        self.of: dict = {}

    def visit_transform(self, node) -> None:
        for pcoll in node.main_inputs.values():
            if isinstance(pcoll, beam.PCollection):
                self.of.setdefault(pcoll, []).append((node, True))
        for side in node.side_inputs:
            self.of.setdefault(side.pvalue, []).append((node, False))


@dataclasses.dataclass
class _Fused:
    """ParDos not yet turned into tasks: each partition of ``parts`` runs through ``steps``
    (``(bundle, side values)``) in ONE task, as Beam runners fuse a chain of ParDos: the
    main output of each step feeds the next. Rendering a shard and writing it happen in
    the same task. ``taps``: the outputs read outside the chain, ``PCollection -> (step,
    tag)``; the chain becomes tasks when one of them is first read (``_Translator.parts``)."""

    parts: list
    steps: list
    name: str
    taps: dict
    materialized: bool = False


class _Translator(PipelineVisitor):
    """Each PCollection becomes a list of partitions, each partition one task (a list of
    values). The graph is built from ``dask.delayed`` tasks with explicit keys and run
    without dask's graph optimisation: dask.bag's blockwise fusion copied a transform with
    two consumers into both (here SkipFinishedShards ran again after the shards were
    written, and the manifest held their rows twice). Chains of ParDos whose every link
    has a single consumer are fused here instead (``_Fused``)."""

    def __init__(self, run, spread, create_partitions, forward_loggers, consumers, workers=()):
        self.run, self.spread, self.create_partitions = run, spread, create_partitions
        self.workers = tuple(workers)
        self.forward_loggers = forward_loggers
        self.consumers = consumers
        self.partitions: dict = {}

    def parts(self, pcoll) -> list:
        """The partitions of ``pcoll`` as tasks (turning its pending fused chain into tasks)."""
        chain = self.partitions[pcoll]
        if isinstance(chain, _Fused):
            chain.materialized = True
            wanted = set(chain.taps.values())
            outs = [
                dask.delayed(_run_steps)(
                    part, chain.steps, wanted, dask_key_name=f"{chain.name}/{i}"
                )
                for i, part in enumerate(chain.parts)
            ]
            for tapped, (step, tag) in chain.taps.items():
                self.partitions[tapped] = [
                    dask.delayed(_values_of)(
                        out, (step, tag), dask_key_name=f"{chain.name}/{i}/{step}/{tag}"
                    )
                    for i, out in enumerate(outs)
                ]
        return self.partitions[pcoll]

    def visit_transform(self, node) -> None:
        transform = node.transform
        mains = [p for p in node.main_inputs.values() if isinstance(p, beam.PCollection)]
        name = f"{self.run}/{node.full_label}"
        if isinstance(transform, beam.ParDo):
            self._par_do(node, mains[0], name)
            return
        inputs = [self.parts(p) for p in mains]  # a root's input is PBegin: none
        if isinstance(transform, _Create):
            parts = self._create(list(transform.values), name)
        elif isinstance(transform, _Reshuffle):
            parts = self._reshuffle(inputs[0], name)
        elif isinstance(transform, beam.Flatten):
            parts = [part for parts in inputs for part in parts]
        elif isinstance(transform, beam.GroupByKey):
            parts = self._group_by_key(inputs[0], name)
        else:
            raise NotImplementedError(
                f"DaskRunner cannot run {type(transform).__name__} ({node.full_label})"
            )
        self.partitions[node.outputs[None]] = parts

    def _create(self, values: list, name: str) -> list:
        count = self.create_partitions or max(1, -(-len(values) // CREATE_PARTITION_SIZE))
        return [
            dask.delayed(list)(values[i::count], dask_key_name=f"{name}/{i}") for i in range(count)
        ]

    def _reshuffle(self, parts: list, name: str) -> list:
        """Each partition cut into pieces: ``spread`` partitions (at least one per input)."""
        pieces = max(1, -(-self.spread // len(parts))) if parts else 0
        out = []
        for i, part in enumerate(parts):
            split = dask.delayed(_split, nout=pieces)(part, pieces, dask_key_name=f"{name}/{i}")
            for j, piece in enumerate(split):
                # Every piece of a split lives where the split ran, and dask's scheduler
                # keeps short dependents beside their data: without a preferred worker per
                # piece, one worker can take every shard (seen with 1-step renders).
                worker = self.workers[len(out) % len(self.workers)] if self.workers else None
                prefer = dask.annotate(workers=[worker], allow_other_workers=True) if worker else nullcontext()
                with prefer:
                    out.append(dask.delayed(_piece)(piece, dask_key_name=f"{name}/{i}/{j}"))
        return out

    def _group_by_key(self, parts: list, name: str) -> list:
        """Hash partitioning by dask's token of the key (the same in every process: Python's
        own hash of a str, and on 3.11 of None, is not), then grouping inside each bucket."""
        buckets = max(1, min(len(parts), self.spread))
        split = [
            dask.delayed(_by_key_hash, nout=buckets)(part, buckets, dask_key_name=f"{name}/{i}")
            for i, part in enumerate(parts)
        ]
        return [
            dask.delayed(_grouped)(*[s[b] for s in split], dask_key_name=f"{name}/group/{b}")
            for b in range(buckets)
        ]

    def _par_do(self, node, source, name: str) -> None:
        transform = node.transform
        sides = [self._side_value(side, name, i) for i, side in enumerate(transform.side_inputs)]
        bundle = _Bundle(
            fn=transform.fn,
            args=transform.args,
            kwargs=transform.kwargs,
            views=[(type(side), side._view_options()) for side in transform.side_inputs],
            label=node.full_label,
            run=self.run,
            forward_loggers=self.forward_loggers,
        )
        shipped = dask.delayed(bundle, name=f"{name}/fn", traverse=False)  # one per worker
        chain = self.partitions[source]
        extend = (
            isinstance(chain, _Fused)
            and not chain.materialized
            and chain.taps[source] == (len(chain.steps) - 1, None)
            and self._fusable(source)
        )
        if extend:
            del chain.taps[source]  # flows into this step inside the task, never a task output
        else:
            chain = _Fused(parts=self.parts(source), steps=[], name=name, taps={})
        chain.steps.append((shipped, sides))
        for tag, pcoll in node.outputs.items():
            chain.taps[pcoll] = (len(chain.steps) - 1, tag)
            self.partitions[pcoll] = chain

    def _fusable(self, pcoll) -> bool:
        """Read only by one ParDo, as its main input."""
        readers = self.consumers.get(pcoll, [])
        return (
            len(readers) == 1 and readers[0][1] and isinstance(readers[0][0].transform, beam.ParDo)
        )

    def _side_value(self, side, name: str, index: int):
        """The side input's values as one task: computed once, read by every task."""
        parts = self.parts(side.pvalue)
        return dask.delayed(_concatenated)(*parts, dask_key_name=f"{name}/side{index}")


def _run_steps(elements, steps: list, wanted: set) -> list:
    """``elements`` through each ``(bundle, side values)`` in turn, the main output of one
    step feeding the next; the ``wanted`` outputs as ``((step, tag), value)`` pairs."""
    values, outputs = elements, []
    for step, (bundle, sides) in enumerate(steps):
        pairs = _run_bundle(values, bundle, *sides)
        outputs.extend(((step, tag), value) for tag, value in pairs if (step, tag) in wanted)
        values = [value for tag, value in pairs if tag is None]
    return outputs


def _count(*parts) -> int:
    return sum(len(part) for part in parts)


def _piece(values: list) -> list:
    """A Reshuffle piece as a task of its own, placed on its preferred worker."""
    return values


def _split(values: list, pieces: int) -> tuple:
    return tuple(values[i::pieces] for i in range(pieces))


def _by_key_hash(pairs: list, buckets: int) -> tuple:
    out = tuple([] for _ in range(buckets))
    for pair in pairs:
        # A key dask cannot tokenize the same way in every process is an error, not a split group.
        out[int(tokenize(pair[0], ensure_deterministic=True), 16) % buckets].append(pair)
    return out


def _grouped(*buckets) -> list:
    groups: dict = {}
    for bucket in buckets:
        for key, value in bucket:
            groups.setdefault(key, []).append(value)
    return list(groups.items())


def _values_of(pairs: list, tag) -> list:
    return [value for output, value in pairs if output == tag]


def _concatenated(*parts) -> list:
    return [value for part in parts for value in part]


@dataclasses.dataclass
class _Bundle:
    """What a ParDo task needs, besides its elements and side input values."""

    fn: beam.DoFn
    args: tuple
    kwargs: dict
    views: list  # (side input class, view options), in the order of the side values
    label: str
    run: str
    forward_loggers: tuple[str, ...]


def _run_bundle(elements, bundle: _Bundle, *side_values) -> list:
    """One partition through one DoFn: ``[(output tag, value)]``, ``None`` for the main output."""
    from distributed import get_worker

    worker = get_worker()
    outputs: list = []
    sides = [
        SideInputMap(view, options, [_in_global_window(v) for v in values])
        for (view, options), values in zip(bundle.views, side_values)
    ]
    receivers = _Receivers(outputs)
    handler = _OutputHandler(
        window_fn=GlobalWindows(),
        main_receivers=receivers[None],
        tagged_receivers=receivers,
        per_element_output_counter=None,
        output_batch_converter=None,
        process_yields_batches=False,
        process_batch_yields_elements=False,
    )
    fn = _READY_DOFNS.take(bundle)
    container = MetricsContainer(bundle.label)
    sampler = statesampler.StateSampler(bundle.label, CounterFactory())
    statesampler.set_current_tracker(sampler)
    _FORWARDING.topic = log_topic(bundle.run)
    try:
        invoker = DoFnInvoker.create_invoker(
            DoFnSignature(fn),
            handler,
            context=DoFnContext(bundle.label, state=None),
            side_inputs=sides,
            input_args=bundle.args,
            input_kwargs=bundle.kwargs,
            user_state_context=None,
            bundle_finalizer_param=beam.DoFn.BundleFinalizerParam(),
        )
        with sampler.scoped_state(bundle.label, "process", metrics_container=container):
            invoker.invoke_start_bundle()
            for element in elements:
                invoker.invoke_process(_in_global_window(element))
            invoker.invoke_finish_bundle()
    finally:
        _FORWARDING.topic = None
        statesampler.set_current_tracker(None)
        _READY_DOFNS.give_back(bundle, fn)
    updates = container.get_cumulative()
    if updates.counters or updates.distributions or updates.gauges:
        # The task key: a task rerun after a worker died reports again under the same key.
        report = f"{worker.get_current_task()} {bundle.label}"  # a fused task runs several steps
        worker.log_event(
            metrics_topic(bundle.run), {"report": report, "updates": pickle.dumps(updates)}
        )
    return outputs


def _in_global_window(value) -> WindowedValue:
    return WindowedValue(value, MIN_TIMESTAMP, (GlobalWindow(),))


class _Receivers(dict):
    """Output tag -> a receiver appending ``(tag, value)`` to one list."""

    def __init__(self, outputs: list):
        super().__init__()
        self._outputs = outputs

    def __missing__(self, tag):
        receiver = self[tag] = _TaggedReceiver(tag, self._outputs)
        return receiver


class _TaggedReceiver(Receiver):
    def __init__(self, tag, outputs: list):
        self._tag, self._outputs = tag, outputs

    def receive(self, windowed_value: WindowedValue) -> None:
        self._outputs.append((self._tag, windowed_value.value))


class _ReadyDoFns:
    """Set-up DoFn instances of the current run in this worker process, by step label.

    A task takes an idle one (or sets up a new copy) and gives it back after
    its bundle, so two threads never share an instance. The launcher releases a run's
    instances on every worker when the run ends (``release_run``: a long-lived cluster
    serves many runs, and their models must not pile up); a bundle of a new run also
    tears down what an earlier run left (a launcher killed before it could release).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._run: str | None = None
        self._idle: dict[str, list] = {}

    def take(self, bundle: _Bundle) -> beam.DoFn:
        with self._lock:
            if self._run != bundle.run:
                stale, self._idle, self._run = self._idle, {}, bundle.run
            else:
                stale = {}
            idle = self._idle.setdefault(bundle.label, [])
            fn = idle.pop() if idle else None
        for fns in stale.values():
            for old in fns:
                old.teardown()
        if fn is None:
            # A copy: tasks may share the deserialised arguments of their graph.
            fn = cloudpickle.loads(cloudpickle.dumps(bundle.fn))
            _install_forwarding(bundle.forward_loggers)
            fn.setup()
        return fn

    def give_back(self, bundle: _Bundle, fn: beam.DoFn) -> None:
        with self._lock:
            if self._run == bundle.run:
                self._idle.setdefault(bundle.label, []).append(fn)

    def release(self, run: str) -> int:
        """Tear down the idle instances of ``run``; returns how many."""
        with self._lock:
            if self._run != run:
                return 0
            stale, self._idle, self._run = self._idle, {}, None
        for fns in stale.values():
            for fn in fns:
                fn.teardown()
        return sum(len(fns) for fns in stale.values())


_READY_DOFNS = _ReadyDoFns()


def release_run(run: str) -> int:
    """Run on each worker by the launcher when ``run`` ends (``Client.run``): its set-up
    DoFns are torn down there; returns how many."""
    return _READY_DOFNS.release(run)


class _Forwarding(threading.local):
    topic: str | None = None  # the log topic of the bundle this thread runs, if any


_FORWARDING = _Forwarding()


class _ForwardToLauncher(logging.Handler):
    """Sends this thread's records, while it runs a bundle, to the run's log topic."""

    def emit(self, record: logging.LogRecord) -> None:
        topic = _FORWARDING.topic
        if topic is None:
            return
        from distributed import get_worker

        worker = get_worker()
        worker.log_event(
            topic,
            {
                "logger": record.name,
                "worker_name": worker.name,  # the scheduler sets "worker" (the address)
                "pid": os.getpid(),
                "message": record.getMessage(),
            },
        )


_FORWARDED: set[str] = set()
_FORWARDED_LOCK = threading.Lock()


def _install_forwarding(names: typing.Iterable[str]) -> None:
    with _FORWARDED_LOCK:
        for name in set(names) - _FORWARDED:
            logger = logging.getLogger(name)
            logger.addHandler(_ForwardToLauncher(logging.INFO))
            if logger.getEffectiveLevel() > logging.INFO:
                logger.setLevel(logging.INFO)
            _FORWARDED.add(name)
