"""``DaskRunner``: Beam's DaskRunner with this project's graph translation.

    python -m jobs.augment --runner=DaskRunner --dask_client_address 127.0.0.1:8786 ...

It runs on a dask.distributed cluster (``--dask_client_address HOST:PORT`` or
``--dask_scheduler_file``; without either, Beam's choice: a ``LocalCluster``), with
Beam's ``DaskOptions``. What it fixes in Beam 2.77's runner is listed in
``pipeline.dask_engine.translation``; here: every sink is computed (not only the last
transform), a Reshuffle spreads over ``--dask_npartitions`` partitions (default:
``SPREAD_PER_THREAD`` per worker thread of the cluster at submission), and the result
has metrics (committed: one report per step of each task, the last one if the task
ran again after a worker died; attempted: every report). Records of ``forward_loggers`` on the workers
are logged again on the launcher, prefixed with the worker's name and pid.

Files: the workers read and write the job's paths themselves, so ``--output`` and the
inputs must be on storage that every worker sees (a bucket, a shared filesystem, or
one machine, as in ``tests/test_dask_cluster.py``).
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import uuid

import apache_beam as beam
import distributed
from apache_beam.pipeline import PTransformOverride
from apache_beam.runners.dask.dask_runner import DaskOptions, DaskRunnerResult
from apache_beam.runners.dask.dask_runner import DaskRunner as BeamDaskRunner
from apache_beam.runners.dask.overrides import _Create, _Reshuffle
from apache_beam.runners.direct.direct_metrics import DirectMetrics

from pipeline.dask_engine.translation import log_topic, metrics_topic, release_run, translate
from pipeline.launch_checks import LaunchError

SPREAD_PER_THREAD = 4  # partitions per worker thread after a Reshuffle: slack for uneven work
# The Beam minor version whose internals this runner and its translation were written and
# tested against (DoFnInvoker, _OutputHandler, the Dask runner's overrides and results).
SUPPORTED_BEAM = "2.77"


def check_beam_version(version: str = beam.__version__) -> None:
    """``LaunchError`` for a Beam other than ``SUPPORTED_BEAM``: its internals may have
    moved, and the bugs worked around may be fixed (``tests/test_dask_cluster.py``)."""
    if ".".join(version.split(".")[:2]) != SUPPORTED_BEAM:
        raise LaunchError(
            f"--runner=DaskRunner was written against Beam {SUPPORTED_BEAM}.x internals and this is "
            f"Beam {version}: install apache-beam=={SUPPORTED_BEAM}.0 (requirements.txt), or port "
            "pipeline/dask_engine and rerun the Beam-bug checks of tests/test_dask_cluster.py on it"
        )


class DaskRunner(BeamDaskRunner):
    def __init__(self, forward_loggers: tuple[str, ...] = ()):
        check_beam_version()
        super().__init__()
        self._forward_loggers = tuple(forward_loggers)

    def run_pipeline(self, pipeline, options):
        dask_options = options.view_as(DaskOptions).get_all_options(
            drop_default=True, current_only=True
        )
        bag_options = DaskOptions._extract_bag_kwargs(dask_options)
        if "partition_size" in bag_options:
            raise ValueError("--dask_partition_size is not supported; pass --dask_npartitions")
        client = distributed.Client(**dask_options)
        pipeline.replace_all([_CreateOverride(), _ReshuffleOverride()])
        threads = sum(client.nthreads().values())
        spread = bag_options.get("npartitions") or SPREAD_PER_THREAD * max(threads, 1)
        run = f"beam-{uuid.uuid4().hex[:12]}"
        workers = tuple(sorted(client.scheduler_info()["workers"]))
        graph = translate(
            pipeline, run, spread, bag_options.get("npartitions"), self._forward_loggers, workers
        )
        client.subscribe_topic(log_topic(run), _log_on_launcher)
        # Counts, not the elements: nothing but a number per sink comes back to the launcher.
        # No graph optimisation: see pipeline.dask_engine.translation._Translator.
        futures = client.compute(graph.sinks, optimize_graph=False)
        return DaskRunResult(client, futures, run)


@dataclasses.dataclass
class DaskRunResult(DaskRunnerResult):
    run: str = ""
    _metrics: DirectMetrics | None = None

    def wait_until_finish(self, duration=None) -> str:
        try:
            state = super().wait_until_finish(duration)
            # Every task has finished, so every report it sent has reached the scheduler.
            self._metrics = _collected_metrics(self.client.get_events(metrics_topic(self.run)))
            return state
        finally:
            # the run's set-up DoFns (its models) are torn down now, not at the next run's start
            self.client.run(release_run, self.run)
            self.client.unsubscribe_topic(log_topic(self.run))
            self.client.close()

    def metrics(self) -> DirectMetrics:
        if self._metrics is None:
            raise RuntimeError("metrics are collected by wait_until_finish(); call it first")
        return self._metrics


def _collected_metrics(events) -> DirectMetrics:
    metrics = DirectMetrics()
    last_report = {}
    for _, event in events:
        updates = pickle.loads(event["updates"])
        metrics.commit_physical(event["report"], updates)
        last_report[event["report"]] = updates
    for report, updates in last_report.items():
        metrics.commit_logical(report, updates)
    return metrics


def _log_on_launcher(event) -> None:
    _, record = event
    logging.getLogger(record["logger"]).info(
        "%s (pid %d): %s", record["worker_name"], record["pid"], record["message"]
    )


class _CreateOverride(PTransformOverride):
    """``Create`` as one node holding its values (Beam's own, ``overrides._Create``)."""

    def matches(self, applied) -> bool:
        return type(applied.transform) is beam.Create

    def get_replacement_transform_for_applied_ptransform(self, applied):
        return _Create(applied.transform.values)


class _ReshuffleOverride(PTransformOverride):
    """``Reshuffle`` as one node, translated to a repartition (``pipeline.dask_engine.translation``)."""

    def matches(self, applied) -> bool:
        return type(applied.transform) is beam.Reshuffle

    def get_replacement_transform_for_applied_ptransform(self, applied):
        return _Reshuffle()
