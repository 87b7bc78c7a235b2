"""``AugmentOptions``: the options of the augment job, in Beam's ``PipelineOptions`` style.

Every option is registered under both spellings, ``--samples-per-label`` and
``--samples_per_label``: people type dashes, while Dataflow Flex Templates (and
Beam itself, when it ships options to workers) pass the underscore name.

``--labels``: Beam's own ``GoogleCloudOptions`` already owns ``--labels`` (Dataflow
job labels) and every options class shares one parser, so the label-map root is
registered as ``--label-maps``; ``jobs.augment`` accepts ``--labels`` as an alias
and rewrites it (``alias_labels_flag``). Dataflow job labels stay available as
``--label key=value``.

Values stay plain strings and numbers (``--size`` is the text ``"HxW"``, read with
``pipeline.option_values.parse_size``) because Beam ships options to workers as a JSON dictionary and
parses them again there. Defaults that depend on other choices are ``None`` here:
``--steps`` (``pipeline.augment_graph.DEFAULT_STEPS``), ``--size`` (the size the
model was trained at, resolved at launch by ``pipeline.launch_checks``) and
``--dtype`` (float16 on cuda, else float32, ``transforms.synthesis_handler``).

Misspelled options: Beam drops arguments that no options class parses, with a
log line. ``parse_augment_options`` makes them an error instead, with Beam's
"did you mean" suggestion (``UnknownOptionError``).
"""

from __future__ import annotations

import argparse
import difflib
import importlib

from apache_beam.options.pipeline_options import PipelineOptions

from amadapter.filtering.pixel_filter import DEFAULT_MARGIN, DEFAULT_MIN_KEPT
from amadapter.pipelines.exemplar_start import DEFAULT_EXEMPLAR_PATH, EXEMPLAR_PATHS
from transforms.renderer import DEFAULT_MODE, JOB_MODES
from amadapter.io.sample_format import IMAGE_FORMATS
from amadapter.pipelines.exemplar_regions import UNASSIGNED
from storage.dataset_layouts import DATASETS, DEFAULT_SPLIT
from pipeline.option_values import OptionValueError, parse_bool, parse_finite, parse_rate
from transforms.retrieve_exemplars import DEFAULT_EXEMPLARS_PER_TARGET

DEVICES = ("cpu", "cuda", "mps")
DTYPES = ("float32", "float16", "bfloat16")
DEFAULT_OUTPUT = "out/augment"
DEFAULT_SHARD_PREFIX = "aug"
DEFAULT_ACCELERATOR = "type:nvidia-l4;count:1;install-nvidia-driver"
LABELS_ALIAS = "--labels"
LABEL_MAPS_FLAG = "--label_maps"
DEFAULT_MAX_FAILURE_RATE = 0.5
DEFAULT_FILTER_REFERENCE_COUNT = 256  # real frames the filter's reference losses come from
# Beam registers a runner's options only when that runner's module is imported, and the
# Dask runner's module needs dask: it is imported when one of its flags is given, and where
# dask is not installed its flags are accepted by name (the runner then says what is missing).
OPTIONAL_RUNNER_FLAGS = {
    "apache_beam.runners.dask.dask_runner": (
        "--dask_client_address",
        "--dask_connection_timeout",
        "--dask_scheduler_file",
        "--dask_client_name",
        "--dask_connection_limit",
        "--dask_npartitions",
        "--dask_partition_size",
    ),
}


class UnknownOptionError(ValueError):
    """Command-line arguments that no options class parses (Beam would drop them)."""


def alias_labels_flag(argv: list[str]) -> list[str]:
    """Rewrite ``--labels X`` / ``--labels=X`` to ``--label_maps`` (see the module docstring)."""
    out = []
    for arg in argv:
        if arg == LABELS_ALIAS:
            out.append(LABEL_MAPS_FLAG)
        elif arg.startswith(LABELS_ALIAS + "="):
            out.append(LABEL_MAPS_FLAG + arg[len(LABELS_ALIAS) :])
        else:
            out.append(arg)
    return out


def parse_augment_options(argv: list[str]) -> "AugmentOptions":
    """The job's options from ``argv`` (``--labels`` aliased); raises ``UnknownOptionError``
    for any argument that neither the job nor Beam nor a runner parses, and
    ``OptionValueError`` for a value that does not parse (argparse would print the usage of
    every Beam option and exit)."""
    argv = alias_labels_flag(argv)
    unknown = unknown_arguments(argv)
    if unknown:
        raise UnknownOptionError("; ".join(unknown))
    return AugmentOptions(argv)


def unknown_arguments(argv: list[str]) -> list[str]:
    """One message per argument no registered options class parses, with the closest known
    option where there is one (Beam's own rule, ``PipelineOptions._warn_on_unknown_options``)."""
    unknown, known = _parse_known(argv)
    missing_runner_flags = set()
    for module, flags in OPTIONAL_RUNNER_FLAGS.items():
        if any(arg.split("=", 1)[0] in flags for arg in unknown):
            try:
                importlib.import_module(module)  # registers the runner's options class
                unknown, known = _parse_known(argv)
            except ImportError:
                missing_runner_flags.update(flags)
    known += [flag for flags in OPTIONAL_RUNNER_FLAGS.values() for flag in flags]
    messages = []
    for position, arg in enumerate(unknown):
        name = arg.split("=", 1)[0]
        if name in missing_runner_flags:
            continue
        if not arg.startswith("-"):
            previous = unknown[position - 1] if position > 0 else ""
            if previous.startswith("--") and "=" not in previous:
                continue  # the value of the unknown option before it, reported with it
            messages.append(f"unexpected argument {arg!r}")
            continue
        suggestion = difflib.get_close_matches(name, known, n=1)
        messages.append(
            f"unknown option {name}" + (f" (did you mean {suggestion[0]}?)" if suggestion else "")
        )
    return messages


def _parse_known(argv: list[str]) -> tuple[list[str], list[str]]:
    """(arguments left unparsed, every known option string) over all registered options
    classes, with the parser Beam itself builds (``get_all_options`` hands it over)."""
    parsers = []
    PipelineOptions([]).get_all_options(add_extra_args_fn=parsers.append)
    parser = parsers[0]
    parser.exit_on_error = False  # a bad value raises here instead of exiting with the usage
    try:
        _, unknown = parser.parse_known_args(argv)
    except argparse.ArgumentError as error:
        raise OptionValueError(str(error)) from None
    known = [flag for action in parser._actions for flag in action.option_strings]
    return unknown, known


def _add(parser, name: str, **kwargs) -> None:
    """Register ``--a-b`` and ``--a_b`` for one option with dest ``a_b``."""
    dest = name.replace("-", "_")
    spellings = [f"--{name}"] + ([f"--{dest}"] if dest != name else [])
    parser.add_argument(*spellings, dest=dest, **kwargs)


class AugmentOptions(PipelineOptions):
    """Options of ``python -m jobs.augment``, in the groups ``--help`` shows
    (``OPTION_GROUPS``); a default that depends on other choices is said in its help."""

    @classmethod
    def _add_argparse_args(cls, parser):
        for title, add_group in OPTION_GROUPS:
            add_group(parser.add_argument_group(title))


def _add_input_args(group) -> None:
    _add(
        group,
        "label-maps",
        default=None,
        help="Root of the target label maps (alias --labels; local, gs:// or s3://). "
        "Default: a small procedural world exported into OUTPUT/_world.",
    )
    _add(group, "dataset", default="cityscapes", choices=DATASETS, help="Layout of --labels.")
    _add(
        group,
        "split",
        default=None,
        help=f"Split subfolder. Default: {DEFAULT_SPLIT} for cityscapes and bdd100k, the "
        "whole root for folder.",
    )
    _add(
        group,
        "label-format",
        default=None,
        choices=("ids", "train_ids", "color"),
        help="Label encoding. Default: cityscapes labelIds (else labelTrainIds) files, "
        "bdd100k masks; required for --dataset folder.",
    )


def _add_exemplar_args(group) -> None:
    _add(
        group,
        "exemplars",
        default=None,
        help="Root of the exemplar pool (photos + label maps); an index is built from it "
        "at start. Default: the --labels root itself (each target's own frame excluded).",
    )
    _add(group, "exemplars-dataset", default=None, choices=DATASETS,
         help="Layout of --exemplars. Default: --dataset.")  # fmt: skip
    _add(group, "exemplars-split", default=None, help="Split of --exemplars. Default: --split.")
    _add(group, "index", default=None,
         help="A prebuilt index (jobs.build_index) instead of --exemplars. Default: none.")  # fmt: skip
    _add(
        group,
        "pool-labels-from",
        default=None,
        help="A segmenter directory (jobs.train_segmenter's, or a transformers semantic-"
        "segmentation checkpoint) that labels the --exemplars pool: its photos are listed "
        "without label maps (any there are ignored), segmented once when the index is "
        "built, and the predicted maps kept with the index. Default: the pool's own label maps.",
    )
    _add(
        group,
        "exemplar-map",
        default=None,
        help="JSON Lines file naming the targets and, per target, which exemplar lends "
        "which classes or painted region (README: 'Choosing exemplars yourself'); instead "
        "of --labels and retrieval. Label formats follow --dataset / --label-format. "
        "Default: none.",
    )
    _add(
        group,
        "exemplars-per-target",
        type=int,
        default=DEFAULT_EXEMPLARS_PER_TARGET,
        help="Retrieved exemplars per target: the first by layout, each next one lending "
        "the target classes the ones before lack (bench/RESULTS.md measures 1 vs 2).",
    )
    _add(
        group,
        "exemplar-topk",
        type=int,
        default=1,
        help="1: the best exemplar; k > 1: a seeded draw among the best k, per sample.",
    )
    _add(
        group,
        "unassigned",
        default="first",
        choices=UNASSIGNED,
        help="What target pixels no exemplar region claims read: the first exemplar, or "
        "none (the target's own tokens only).",
    )


def _add_model_args(group) -> None:
    _add(
        group,
        "model",
        default=None,
        help="Checkpoint directory (local or remote). Default: the bundled demo model.",
    )
    _add(group, "samples-per-label", type=int, default=1, help="Samples per label map.")
    _add(group, "steps", type=int, default=None, help="DDIM steps. Default: 20, the paper's.")
    _add(group, "guidance", type=parse_finite, default=7.5, help="Classifier-free guidance scale.")
    _add(
        group,
        "size",
        default=None,
        help="Output HxW, e.g. 512x1024; a multiple of the model's latent grid. "
        "Default: the size the model was trained at.",
    )
    _add(
        group,
        "seed",
        type=int,
        default=0,
        help="Run seed; each sample's seed is derived from it and the sample key.",
    )
    _add(
        group,
        "exemplar-path",
        default=DEFAULT_EXEMPLAR_PATH,
        choices=EXEMPLAR_PATHS,
        help="How exemplar rows enter the denoising: 'inverted' (DDIM inversion, one more "
        "UNet row per step on a cache miss) or 'noised' (forward-noised per step, no "
        "inversion); bench/RESULTS.md compares them.",
    )
    _add(
        group,
        "mode",
        default=DEFAULT_MODE,
        choices=JOB_MODES,
        help="How the target reads its exemplar: 'am_adapter' (the learned adapter), "
        "'categorical' (a fixed bias towards exemplar pixels of the same class) or "
        "'augmented' (plain augmented self-attention); bench/RESULTS.md compares them.",
    )


def _add_output_args(group) -> None:
    _add(group, "output", default=DEFAULT_OUTPUT, help="Output folder or bucket prefix.")
    _add(group, "shard-size", type=int, default=64, help="Samples per shard.")
    _add(group, "shard-prefix", default=DEFAULT_SHARD_PREFIX, help="Shard file prefix.")
    _add(group, "image-format", default="jpg", choices=IMAGE_FORMATS, help="Image encoding.")
    _add(
        group,
        "preview-count",
        type=int,
        default=8,
        help="Samples in the preview written after the run (0: none).",
    )
    _add(
        group,
        "overwrite",
        type=parse_bool,
        nargs="?",
        const=True,
        default=False,
        help="Discard OUTPUT's shards; render all. A bare flag or true/false (Flex Templates "
        "pass a value).",
    )


def _add_runtime_args(group) -> None:
    _add(group, "batch-size", type=int, default=8, help="Targets per model call.")
    _add(group, "device", default="cpu", choices=DEVICES, help="Torch device of the workers.")
    _add(
        group,
        "dtype",
        default=None,
        choices=DTYPES,
        help="Model dtype on the device. Default: float16 on cuda, else float32.",
    )
    _add(
        group,
        "torch-threads",
        type=int,
        default=1,
        help="Torch intra-op threads per worker process. 1 suits CPU workers (Beam runs "
        "about one SDK process per core) and shared machines, where spinning threads "
        "contend; raise it for one process on an otherwise idle machine. Part of the "
        "options a resumed run must repeat: float results may depend on it.",
    )
    _add(
        group,
        "model-copies",
        type=int,
        default=None,
        help="Copies of the model per worker machine, shared across its processes "
        "(GPU workers: e.g. 1 per GPU, or 2 on a large GPU to overlap CPU work). "
        "Default: one per process, or one per machine with --share-model.",
    )
    _add(
        group,
        "share-model",
        type=parse_bool,
        nargs="?",
        const=True,
        default=False,
        help="Load one model per machine shared by all SDK processes (large models); "
        "a bare flag or true/false.",
    )
    _add(
        group,
        "max-failure-rate",
        type=parse_rate,
        default=DEFAULT_MAX_FAILURE_RATE,
        help="Exit non-zero (after writing the manifest) when more than this fraction of "
        "the inputs failed, or when every model call failed.",
    )
    _add(
        group,
        "accelerator",
        default=DEFAULT_ACCELERATOR,
        help="Beam accelerator resource hint for the synthesis step, used with "
        "--device cuda.",
    )


def _add_filter_args(group) -> None:
    """The quality filter's options (``transforms.quality_filter``, README "Quality filter")."""
    _add(
        group,
        "filter-segmenter",
        default=None,
        help="Directory of a segmentation model (jobs.train_segmenter's output or a "
        "transformers checkpoint, e.g. a Cityscapes SegFormer): turns on the quality filter. "
        "Default: no filter.",
    )
    _add(
        group,
        "filter-margin",
        type=parse_finite,
        default=DEFAULT_MARGIN,
        help="A pixel becomes ignore (255) when its loss is above this times its class's "
        "mean loss on real images.",
    )
    _add(
        group,
        "filter-min-kept",
        type=parse_rate,
        default=DEFAULT_MIN_KEPT,
        help="A sample keeping a smaller share of its labelled pixels is not written "
        "(manifest status 'filtered').",
    )
    _add(
        group,
        "filter-reference",
        default=None,
        help="Root of the real photos the reference losses are measured on "
        "(default: the exemplar pool).",
    )
    _add(group, "filter-reference-dataset", default=None, choices=DATASETS,
         help="Layout of --filter-reference (default: the pool's).")  # fmt: skip
    _add(group, "filter-reference-split", default=None,
         help="Split of --filter-reference (default: the pool's).")  # fmt: skip
    _add(
        group,
        "filter-reference-count",
        type=int,
        default=DEFAULT_FILTER_REFERENCE_COUNT,
        help="At most this many reference frames, evenly spaced over them by key.",
    )


# --help shows the job's options in these groups, in this order (pipeline.help_page).
OPTION_GROUPS = (
    ("inputs", _add_input_args),
    ("exemplars", _add_exemplar_args),
    ("model and sampling", _add_model_args),
    ("output", _add_output_args),
    ("quality filter", _add_filter_args),
    ("runtime", _add_runtime_args),
)
