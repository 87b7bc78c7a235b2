"""``select_runner``: the runner object for ``beam.Pipeline(runner=...)`` from ``--runner``.

Beam 2.77 knows Dask only by the full class path
(``apache_beam.runners.dask.dask_runner.DaskRunner``); ``--runner=DaskRunner`` and
``--runner=dask`` are "Unexpected pipeline runner" there. Every spelling that means
Dask gets ``pipeline.dask_engine.runner.DaskRunner`` (Beam's runner with this project's
translation); any other name is returned as is, for Beam to resolve. Dask is an
optional extra, imported only when asked for; where it is missing, asking for it is a
``LaunchError``.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline.launch_checks import LaunchError

BEAM_DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
DASK_RUNNER_NAMES = ("dask", "daskrunner", BEAM_DASK_RUNNER.lower())
PROGRESS_LOGGER = "augment"  # the job's progress lines (transforms log there), shown by workers


def is_dask_runner(name: str | None) -> bool:
    return name is not None and name.lower() in DASK_RUNNER_NAMES


def select_runner(options: PipelineOptions):
    """A ``DaskRunner`` instance when ``--runner`` names Dask, else the ``--runner`` value."""
    name = options.view_as(StandardOptions).runner
    if not is_dask_runner(name):
        return name
    try:
        from pipeline.dask_engine.runner import DaskRunner
    except ImportError as error:  # a launch error (exit 2, one line), not a traceback
        raise LaunchError(
            f"--runner={name} needs dask.distributed, which is not installed here "
            f"({error}): pip install '.[dask]' (make setup installs it)"
        ) from None
    return DaskRunner(forward_loggers=(PROGRESS_LOGGER,))
