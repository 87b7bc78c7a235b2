"""The quality filter's setup on the launcher: its model, and its reference losses on real images.

``prepare_quality_filter`` runs once per launch, before the render fingerprint is
taken (the filter is part of it). The reference losses (the filter segmenter's mean
per-pixel loss per class on real photos) are measured HERE, once, not on each
worker: every worker then applies the same numbers, whatever its device, and the
numbers are recorded twice: in ``OUTPUT/_filter/reference_losses.json`` (with the
images they came from) and in every shard's fingerprint.

- Real photos: ``--filter-reference ROOT`` (its ``--filter-reference-dataset`` and
  ``-split``, default the pool's), else the exemplar pool itself (``--exemplars``,
  or the entries of ``--index``; with ``--exemplar-map`` there is no pool, so
  ``--filter-reference`` is required, as with ``--pool-labels-from``, whose labels are
  predictions). At most ``--filter-reference-count`` frames,
  evenly spaced over the frames sorted by key, so the choice is deterministic;
  frames that cannot be read are skipped with their named error.
- Each frame is resized to the output size (photo bilinear, labels with the
  pipeline's nearest resize), so reference and synthetic losses are measured
  alike. Measured on the launcher's CPU in float32.
- A rerun into the same output reuses the recorded file when the model, the
  reference and the size are the same (so a resumed run keeps its fingerprint even
  if the pool changed in between); ``--overwrite`` measures again.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import torch
from apache_beam.io.filesystems import FileSystems
from PIL import Image

from amadapter.filtering import (
    ReferenceLosses,
    SegmenterFormatError,
    load_segmentation_model,
    measure_reference_losses,
)
from amadapter.io.errors import EmptyRootError, InputError
from amadapter.io.resize import resize_labels_nearest
from amadapter.retrieval.store import IndexStore
from pipeline.launch_checks import LaunchError
from storage.exemplar_pool import pool_sources
from storage.fileio import exists, read_bytes, write_atomically
from storage.fingerprint import checkpoint_sha256
from transforms.load_exemplars import load_exemplar
from transforms.quality_filter import QualityFilterSpec
from storage.records import LabelSource
from storage.fileio import local_model_directory

FILTER_DIR = "_filter"
REFERENCE_FILE = "reference_losses.json"
LOG = logging.getLogger("augment")


def prepare_quality_filter(
    options, inputs, size: tuple[int, int], pool_labels: dict | None = None
) -> QualityFilterSpec | None:
    """The filter of this run (None without ``--filter-segmenter``); ``LaunchError`` for a
    segmenter directory that holds no segmenter, or a reference with no usable frame.
    ``pool_labels``: who predicted the pool's label maps (None: they are its own)."""
    if options.filter_segmenter is None:
        return None
    if options.filter_margin <= 0:
        raise LaunchError(f"--filter-margin must be positive, got {options.filter_margin}")
    try:
        model_sha256 = checkpoint_sha256(options.filter_segmenter)
    except FileNotFoundError as error:
        raise LaunchError(f"--filter-segmenter: {error}") from None
    sources, reference_source = reference_sources(options, inputs, pool_labels)
    record = {
        "model_sha256": model_sha256,
        "reference": reference_source,
        "size": list(size),
        "count": options.filter_reference_count,
    }
    path = FileSystems.join(options.output, FILTER_DIR, REFERENCE_FILE)
    reference = None if options.overwrite else _recorded(path, record)
    if reference is None:
        frames = evenly_spaced(sources, options.filter_reference_count)
        reference = _measure(options.filter_segmenter, frames, size)
        data = {**record, "reference_losses": reference.to_json()}
        write_atomically(path, (json.dumps(data, indent=1) + "\n").encode(), "application/json")
        LOG.info("quality filter: reference losses of %d real frames -> %s", reference.images, path)
    return QualityFilterSpec(
        segmenter=options.filter_segmenter,
        model_sha256=model_sha256,
        reference=reference,
        reference_source=reference_source,
        margin=options.filter_margin,
        min_kept=options.filter_min_kept,
        device=options.device,
    )


def reference_sources(options, inputs, pool_labels: dict | None = None) -> tuple[list[LabelSource], str]:
    """The candidate reference frames (with photos, sorted by key) and how they are named in
    the fingerprint."""
    count = options.filter_reference_count
    if options.filter_reference is None and inputs.exemplar_map is not None:
        raise LaunchError(
            "--filter-segmenter with --exemplar-map needs --filter-reference ROOT: the map "
            "names exemplars per target, not a pool to measure the reference losses on"
        )
    if options.filter_reference is None and pool_labels is not None:
        raise LaunchError(
            "--filter-segmenter with --pool-labels-from needs --filter-reference ROOT: labelled "
            "photos to measure the reference losses on (the pool's labels are predictions)"
        )
    if options.filter_reference is None and inputs.index is not None:
        name = f"the exemplar pool (index {inputs.index}), {count} frames"
        return _index_sources(inputs.index), name
    if options.filter_reference is None:
        root, dataset, split = inputs.exemplars, inputs.exemplars_dataset, inputs.exemplars_split
        name = "the exemplar pool"
    else:
        root = options.filter_reference
        dataset = options.filter_reference_dataset or inputs.exemplars_dataset
        split = options.filter_reference_split or inputs.exemplars_split
        name = f"{root} dataset={dataset} split={split}"
    label_format = inputs.label_format if dataset == "folder" else None
    try:
        sources = pool_sources(root, dataset, split, label_format)
    except (EmptyRootError, ValueError) as error:
        raise LaunchError(f"--filter-reference {root}: {error}") from None
    return [s for s in sources if s.photo_path is not None], f"{name}, {count} frames"


def _index_sources(index: str) -> list[LabelSource]:
    store = IndexStore(index)
    columns = ("key", "label_path", "photo_path", "label_format", "dataset")
    values = {c: [v for chunk in store.read_column(c) for v in chunk.to_pylist()] for c in columns}
    sources = [LabelSource(*row) for row in zip(*(values[c] for c in columns))]
    return sorted((s for s in sources if s.photo_path), key=lambda s: s.key)


def evenly_spaced(items: list, count: int) -> list:
    """At most ``count`` of ``items``, evenly spaced from the first to the last."""
    if len(items) <= count:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def _recorded(path: str, record: dict) -> ReferenceLosses | None:
    """The reference losses recorded under the output for the same ``record``, if any."""
    if not exists(path):
        return None
    data = json.loads(read_bytes(path))
    if any(data.get(name) != value for name, value in record.items()):
        return None
    return ReferenceLosses.from_json(data["reference_losses"])


def _measure(segmenter: str, sources: list[LabelSource], size) -> ReferenceLosses:
    with local_model_directory(segmenter) as directory:
        try:
            model = load_segmentation_model(directory, "cpu")
        except SegmenterFormatError as error:
            raise LaunchError(f"--filter-segmenter: {error}") from None
    reference = measure_reference_losses(model, _frames(sources, size))
    if reference.images == 0:
        raise LaunchError("--filter-reference: no readable real frame to measure the filter on")
    return reference


def _frames(sources: list[LabelSource], size: tuple[int, int]):
    """(photo, train IDs) of each readable source, resized to ``size``."""
    for source in sources:
        try:
            frame = load_exemplar(source)
        except InputError as error:
            LOG.warning("quality filter reference: skipped %s", error)
            continue
        photo = Image.fromarray(frame.image).resize((size[1], size[0]), Image.BILINEAR)
        labels = resize_labels_nearest(torch.from_numpy(frame.labels)[None], size)[0].numpy()
        yield np.asarray(photo), labels
