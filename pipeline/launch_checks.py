"""What the augment job checks on the launcher, before the pipeline starts.

Anything that would otherwise fail on every worker, or silently produce a run
of failure rows (a missing root: one ``empty_root`` row and an empty tar; a size
off the latent grid: every batch ``synthesis_failed``), is a ``LaunchError``
here, naming the option and what to pass instead. The checks are cheap whatever
the input count: the model is read from its config files (no weights), and a
root is probed for ONE matching label map (the full listing stays on a worker,
``transforms.read_label_maps``).
"""

from __future__ import annotations

import json
import os

from apache_beam.io.filesystems import FileSystems

from amadapter.pipelines.model_factory import trained_size
from amadapter.pipelines.pipeline_amadapter import latent_grid
from pipeline.option_values import parse_size
from storage.fileio import exists, list_input_files, read_bytes
from amadapter.models.segmentation_models import SegmenterFormatError
from storage.dataset_layouts import label_globs, photo_globs, searched_split
from storage.unlabelled_pool import check_segmenter_directory
from transforms.read_exemplar_map import numbered_lines

MODEL_INDEX = "model_index.json"  # present in every checkpoint directory
POSITIVE_OPTIONS = (  # None where the option has no default value
    "samples_per_label",
    "exemplar_topk",
    "exemplars_per_target",
    "shard_size",
    "batch_size",
    "steps",
    "torch_threads",
    "model_copies",
    "filter_reference_count",
)


class LaunchError(ValueError):
    """A problem with the job's options or inputs, found before the pipeline starts."""


def check_launch(options, inputs) -> tuple[int, int]:
    """Check ``options`` (``AugmentOptions``) and ``inputs`` (``AugmentInputs``, defaults
    applied); returns the output size, (height, width): ``--size`` or the size the model
    was trained at."""
    _check_counts(options)
    if inputs.exemplar_map is not None:
        _check_exemplar_map(options, inputs.exemplar_map)
        return output_size(options.size, inputs.model)
    _check_label_root("--labels", inputs.labels, inputs.dataset, inputs.split, inputs.label_format)
    if inputs.pool_labels_from is not None:
        _check_pool_labelling(inputs)
    elif inputs.index is not None:
        if not exists(inputs.index):
            raise LaunchError(f"--index {inputs.index}: does not exist")
    elif inputs.exemplars is not None:
        # A folder pool is read with the same --label-format as the label maps.
        pool_format = inputs.label_format if inputs.exemplars_dataset == "folder" else None
        _check_label_root(
            "--exemplars",
            inputs.exemplars,
            inputs.exemplars_dataset,
            inputs.exemplars_split,
            pool_format,
        )
    return output_size(options.size, inputs.model)


def output_size(size: str | None, model: str) -> tuple[int, int]:
    """``size`` ("HxW") checked against the model's latent grid, or the model's trained size."""
    unet, vae = _model_configs(model)
    grid = latent_grid(unet, vae)
    if size is None:
        height, width = trained_size(unet, vae)
        source = f"the size the model was trained at, {height}x{width},"
    else:
        try:
            height, width = parse_size(size)
        except ValueError as error:
            raise LaunchError(f"--size: {error}") from None
        source = f"--size {size}"
    if height % grid or width % grid:
        nearest = " or ".join(nearest_valid_sizes(height, width, grid))
        raise LaunchError(
            f"{source} is not a multiple of {grid}, the latent grid of the model {model}: "
            f"use --size {nearest}"
        )
    return height, width


def nearest_valid_sizes(height: int, width: int, grid: int) -> list[str]:
    """The sizes with each side rounded down, then up, to a multiple of ``grid``
    (720x1280, grid 64 -> 704x1280, 768x1280); a side already valid stays."""

    def down(side):
        return side - side % grid

    def up(side):
        return down(side) + (grid if side % grid else 0)

    candidates = [(down(height), down(width)), (up(height), up(width))]
    return [f"{h}x{w}" for h, w in dict.fromkeys(candidates) if h > 0 and w > 0]


def _check_counts(options) -> None:
    for name in POSITIVE_OPTIONS:
        value = getattr(options, name)
        if value is not None and value < 1:
            raise LaunchError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def _check_exemplar_map(options, path: str) -> None:
    """The map exists, holds a line (an empty root is refused alike), is the only source of
    targets and exemplars, and its label files' format can be told."""
    flags = {"label_maps": "--labels", "exemplars": "--exemplars", "index": "--index",
             "pool_labels_from": "--pool-labels-from"}  # fmt: skip
    clashing = [flag for name, flag in flags.items() if getattr(options, name)]
    if clashing:
        raise LaunchError(
            f"--exemplar-map names the targets and their exemplars itself; drop {', '.join(clashing)}"
        )
    if options.dataset == "folder" and options.label_format is None:
        raise LaunchError("--exemplar-map with --dataset folder needs --label-format")
    if not exists(path):
        raise LaunchError(f"--exemplar-map {path}: no such file")
    if next(numbered_lines(path), None) is None:  # reads up to the first line only
        raise LaunchError(f"--exemplar-map {path}: holds no lines (one JSON object per target)")


def _check_pool_labelling(inputs) -> None:
    """``--pool-labels-from`` names a segmenter directory and labels an ``--exemplars`` pool
    that holds photos (an ``--index`` has its label maps already)."""
    segmenter = inputs.pool_labels_from
    if inputs.index is not None:
        raise LaunchError(
            "--pool-labels-from labels the photos of an --exemplars pool as its index is built; "
            "an --index holds its label maps already (build it with jobs.build_index --pool-labels-from)"
        )
    try:
        check_segmenter_directory(segmenter)
    except SegmenterFormatError as error:
        raise LaunchError(f"--pool-labels-from {error}") from None
    try:
        globs = photo_globs(inputs.exemplars, inputs.exemplars_dataset, inputs.exemplars_split)
    except ValueError as error:
        raise LaunchError(f"--exemplars {inputs.exemplars}: {error}") from None
    if not any(list_input_files(glob, limit=1) for glob in globs):
        raise LaunchError(
            f"--exemplars {inputs.exemplars}: holds no {inputs.exemplars_dataset} photos "
            f"({searched_split(inputs.exemplars_dataset, inputs.exemplars_split)}); looked for "
            + " and ".join(globs)
        )


def _check_label_root(flag: str, root: str, dataset: str, split, label_format) -> None:
    """``root`` exists and holds at least one label map of ``dataset`` / ``split``."""
    if FileSystems.get_scheme(root) is None and not os.path.isdir(root):
        raise LaunchError(f"{flag} {root}: no such directory")
    try:
        globs = label_globs(root, dataset, split, label_format)
    except ValueError as error:
        raise LaunchError(f"{flag} {root}: {error}") from None
    if not any(list_input_files(glob, limit=1) for glob in globs.values()):
        raise LaunchError(
            f"{flag} {root}: holds no {dataset} label maps ({searched_split(dataset, split)}); looked for "
            + " and ".join(globs.values())
        )


def _model_configs(model: str) -> tuple[dict, dict]:
    """The UNet and VAE config dictionaries of a checkpoint directory (local or remote)."""
    if not exists(FileSystems.join(model, MODEL_INDEX)):
        raise LaunchError(
            f"--model {model}: no model there (no {MODEL_INDEX}); pass a checkpoint "
            "directory (AMAdapterPipeline.save_pretrained)"
        )
    configs = []
    for component in ("unet", "vae"):
        path = FileSystems.join(model, component, "config.json")
        try:
            configs.append(json.loads(read_bytes(path)))
        except (OSError, ValueError) as error:  # Beam raises OSError subclasses when missing
            raise LaunchError(f"--model {model}: cannot read {path}: {error}") from None
    return configs[0], configs[1]
