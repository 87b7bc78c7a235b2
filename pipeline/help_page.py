"""``python -m jobs.augment --help``: the job's options first, in their groups, with their
defaults; then the runners; then Beam's own options.

Beam's parser would print all of its ~700 lines of options first and the job's after
them, in one group; this page is built from the same registrations
(``AugmentOptions._add_argparse_args`` and every other ``PipelineOptions`` subclass), so
it cannot drift from what the job parses.
"""

from __future__ import annotations

import argparse
import importlib

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from pipeline.options import OPTIONAL_RUNNER_FLAGS, AugmentOptions

PROG = "python -m jobs.augment"
USAGE = f"{PROG} [--labels ROOT | --exemplar-map FILE] [job options] [--runner NAME] [runner options]"
DESCRIPTION = (
    "Label maps + an exemplar pool -> synthetic (image, label) WebDataset shards.\n"
    "Exit status: 0 done; 1 the run failed (more than --max-failure-rate of the inputs, or\n"
    "every model call); 2 the options or inputs are wrong before the pipeline starts.\n"
    "Every --dashed-option is also --underscored_option (Flex Templates pass those)."
)
RUNNERS = """runners (--runner NAME; the default is DirectRunner):
  DirectRunner     this machine. --direct_running_mode in_memory (the default: one
                   thread), multi_threading (threads share one model) or
                   multi_processing (one SDK process each); --direct_num_workers N
  DaskRunner       a dask.distributed cluster (pip install '.[dask]'; make setup
                   installs it): --dask_client_address HOST:PORT or
                   --dask_scheduler_file FILE; also --runner=dask
  DataflowRunner   Google Cloud Dataflow: --project, --region, --temp_location,
                   --sdk_container_image (README "Dataflow", deploy/dataflow)
  FlinkRunner      a Flink cluster: --flink_master HOST:PORT (Beam starts a job
                   server; needs Java)
  SparkRunner      a Spark cluster: --spark_master_url spark://HOST:PORT (likewise)
"""


class _DefaultsShown(argparse.RawDescriptionHelpFormatter):
    """Appends "(default: X)" to an option whose help does not already say its default
    (options whose default depends on other choices say it in their help text), and shows
    one spelling of each: the underscore twin of every dashed option is said once above."""

    def _format_action_invocation(self, action):
        first = action.option_strings[0]
        names = [first] + [n for n in action.option_strings[1:] if n.replace("_", "-") != first]
        if action.nargs == 0:
            return ", ".join(names)
        value = self._format_args(action, self._get_default_metavar_for_optional(action))
        return ", ".join(f"{name} {value}" for name in names)

    def _get_help_string(self, action):
        text = action.help or ""
        if action.nargs == 0 or action.default is None or "default" in text.lower():
            return text
        return f"{text} (default: %(default)s)"


def help_text() -> str:
    """The whole help page (see the module docstring)."""
    job = argparse.ArgumentParser(
        prog=PROG, usage=USAGE, description=DESCRIPTION, formatter_class=_DefaultsShown, add_help=False
    )
    job.add_argument("-h", "--help", action="store_true", help="show this page and exit")
    AugmentOptions._add_argparse_args(job)
    beam = _BeamArgumentParser(prog=PROG, usage=argparse.SUPPRESS, add_help=False, allow_abbrev=False)
    for cls in _beam_options_classes():
        cls._add_argparse_args(beam)
    beam_options = beam.format_help().strip().replace("options:", "Beam's own options:", 1)
    return f"{job.format_help()}\n{RUNNERS}\n{beam_options}\n"


def _beam_options_classes() -> list[type]:
    """Every registered options class but the job's, one per name (Beam's own rule), with
    the optional runners' classes where their modules import."""
    for module in OPTIONAL_RUNNER_FLAGS:
        try:
            importlib.import_module(module)
        except ImportError:
            pass  # dask not installed: its options are not listed, DaskRunner says so
    unique: dict[str, type] = {}
    for cls in PipelineOptions.__subclasses__():
        if cls is not AugmentOptions:
            unique.setdefault(str(cls), cls)
    return list(unique.values())
