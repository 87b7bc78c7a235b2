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
``parse_size``) because Beam ships options to workers as a JSON dictionary and
parses them again there. Defaults that depend on other choices are ``None`` here:
``--steps`` (``pipeline.augment_graph.DEFAULT_STEPS``), ``--size`` (the size the
model was trained at, resolved at launch by ``pipeline.launch_checks``) and
``--dtype`` (float16 on cuda, else float32, ``transforms.synthesis_handler``).

Misspelled options: Beam drops arguments that no options class parses, with a
log line. ``parse_augment_options`` makes them an error instead, with Beam's
"did you mean" suggestion (``UnknownOptionError``).
"""

from __future__ import annotations

import difflib
import importlib

from apache_beam.options.pipeline_options import PipelineOptions

from amadapter.pipelines.exemplar_start import DEFAULT_EXEMPLAR_PATH, EXEMPLAR_PATHS
from amadapter.io.sample_format import IMAGE_FORMATS
from amadapter.pipelines.exemplar_regions import UNASSIGNED
from transforms.label_sources import DATASETS
from transforms.retrieve_exemplars import DEFAULT_EXEMPLARS_PER_TARGET

DEVICES = ("cpu", "cuda", "mps")
DTYPES = ("float32", "float16", "bfloat16")
DEFAULT_OUTPUT = "out/augment"
DEFAULT_SHARD_PREFIX = "aug"
DEFAULT_ACCELERATOR = "type:nvidia-l4;count:1;install-nvidia-driver"
LABELS_ALIAS = "--labels"
LABEL_MAPS_FLAG = "--label_maps"
DEFAULT_MAX_FAILURE_RATE = 0.5
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


def parse_size(text: str) -> tuple[int, int]:
    """``"64x128"`` -> ``(64, 128)`` (height, width)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must be HxW, e.g. 512x1024, got {text!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {text!r}")
    return height, width


def parse_bool(text: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no): Flex Templates pass booleans as values."""
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"expected true or false, got {text!r}")
    return value in ("true", "1", "yes")


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


def parse_rate(text: str) -> float:
    """A fraction in [0, 1]."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"expected a fraction between 0 and 1, got {text!r}")
    return value


def parse_augment_options(argv: list[str]) -> "AugmentOptions":
    """The job's options from ``argv`` (``--labels`` aliased); raises ``UnknownOptionError``
    for any argument that neither the job nor Beam nor a runner parses."""
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
    _, unknown = parser.parse_known_args(argv)
    known = [flag for action in parser._actions for flag in action.option_strings]
    return unknown, known


def _add(parser, name: str, **kwargs) -> None:
    """Register ``--a-b`` and ``--a_b`` for one option with dest ``a_b``."""
    dest = name.replace("-", "_")
    spellings = [f"--{name}"] + ([f"--{dest}"] if dest != name else [])
    parser.add_argument(*spellings, dest=dest, **kwargs)


class AugmentOptions(PipelineOptions):
    """Options of ``python -m jobs.augment`` (``--help`` lists them)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        # Inputs.
        _add(
            parser,
            "label-maps",
            default=None,
            help="Root of the target label maps (alias --labels; local, gs:// or s3://). "
            "Default: a small procedural world exported into OUTPUT/_world.",
        )
        _add(parser, "dataset", default="cityscapes", choices=DATASETS, help="Layout of --labels.")
        _add(parser, "split", default=None, help="Split subfolder (cityscapes/bdd100k: train).")
        _add(
            parser,
            "label-format",
            default=None,
            choices=("ids", "train_ids", "color"),
            help="Label encoding (required for --dataset folder).",
        )
        _add(
            parser,
            "exemplars",
            default=None,
            help="Root of the exemplar pool (photos + label maps); an index is built from it "
            "at start. Default: the --labels root itself (each target's own frame excluded).",
        )
        _add(parser, "exemplars-dataset", default=None, choices=DATASETS, help="Default --dataset.")
        _add(parser, "exemplars-split", default=None, help="Default: --split.")
        _add(parser, "index", default=None, help="A prebuilt index (jobs.build_index) instead.")
        _add(
            parser,
            "exemplar-map",
            default=None,
            help="JSON Lines file naming the targets and, per target, which exemplar lends "
            "which classes or painted region (README: 'Choosing exemplars yourself'); instead "
            "of --labels and retrieval. Label formats follow --dataset / --label-format.",
        )
        _add(
            parser,
            "exemplars-per-target",
            type=int,
            default=DEFAULT_EXEMPLARS_PER_TARGET,
            help="Retrieved exemplars per target: the first by layout, each next one lending "
            "the target classes the ones before lack (bench/RESULTS.md measures 1 vs 2).",
        )
        _add(
            parser,
            "unassigned",
            default="first",
            choices=UNASSIGNED,
            help="What target pixels no exemplar region claims read: the first exemplar, or "
            "none (the target's own tokens only).",
        )
        # Model and sampling.
        _add(
            parser,
            "model",
            default=None,
            help="Checkpoint directory (local or remote). Default: the bundled demo model.",
        )
        _add(parser, "samples-per-label", type=int, default=1, help="Samples per label map.")
        _add(
            parser,
            "exemplar-topk",
            type=int,
            default=1,
            help="1: the best exemplar; k > 1: a seeded draw among the best k, per sample.",
        )
        _add(
            parser,
            "steps",
            type=int,
            default=None,
            help="DDIM steps (default 20, the paper's).",
        )
        _add(parser, "guidance", type=float, default=7.5, help="Classifier-free guidance scale.")
        _add(
            parser,
            "size",
            default=None,
            help="Output HxW, e.g. 512x1024; a multiple of the model's latent grid "
            "(default: the size the model was trained at).",
        )
        _add(
            parser,
            "seed",
            type=int,
            default=0,
            help="Run seed; each sample's seed is " "derived from it and the sample key.",
        )
        # Output.
        _add(parser, "output", default=DEFAULT_OUTPUT, help="Output folder or bucket prefix.")
        _add(parser, "shard-size", type=int, default=64, help="Samples per shard.")
        _add(parser, "shard-prefix", default=DEFAULT_SHARD_PREFIX, help="Shard file prefix.")
        _add(parser, "image-format", default="jpg", choices=IMAGE_FORMATS, help="Image encoding.")
        _add(
            parser,
            "preview-count",
            type=int,
            default=8,
            help="Samples in the preview written after the run (0: none).",
        )
        _add(
            parser,
            "exemplar-path",
            default=DEFAULT_EXEMPLAR_PATH,
            choices=EXEMPLAR_PATHS,
            help="How exemplar rows enter the denoising: 'inverted' (DDIM inversion, one more "
            "UNet row per step on a cache miss) or 'noised' (forward-noised per step, no "
            "inversion); bench/RESULTS.md compares them.",
        )
        # Execution.
        _add(parser, "batch-size", type=int, default=8, help="Targets per model call.")
        _add(parser, "device", default="cpu", choices=DEVICES, help="Torch device of the workers.")
        _add(
            parser,
            "dtype",
            default=None,
            choices=DTYPES,
            help="Model dtype on the device (default: float16 on cuda, else float32).",
        )
        _add(
            parser,
            "torch-threads",
            type=int,
            default=1,
            help="Torch intra-op threads per worker process. 1 suits CPU workers (Beam runs "
            "about one SDK process per core) and shared machines, where spinning threads "
            "contend; raise it for one process on an otherwise idle machine. Part of the "
            "options a resumed run must repeat: float results may depend on it.",
        )
        _add(
            parser,
            "model-copies",
            type=int,
            default=None,
            help="Copies of the model per worker machine, shared across its processes "
            "(GPU workers: e.g. 1 per GPU, or 2 on a large GPU to overlap CPU work).",
        )
        _add(
            parser,
            "share-model",
            type=parse_bool,
            nargs="?",
            const=True,
            default=False,
            help="Load one model per machine shared by all SDK processes (large models); "
            "a bare flag or true/false.",
        )
        _add(
            parser,
            "max-failure-rate",
            type=parse_rate,
            default=DEFAULT_MAX_FAILURE_RATE,
            help="Exit non-zero (after writing the manifest) when more than this fraction of "
            "the inputs failed, or when every model call failed.",
        )
        _add(
            parser,
            "accelerator",
            default=DEFAULT_ACCELERATOR,
            help="Beam accelerator resource hint for the synthesis step, used with "
            "--device cuda.",
        )
        _add(parser, "overwrite", action="store_true", help="Discard OUTPUT's shards; render all.")
