"""Read and decode label maps in Beam, one named failure row per bad input.

Usage::

    result = pipeline | ReadLabelMaps(root, "cityscapes", split="val", photos="check")
    result.records   # PCollection[LabelRecord]
    result.failures  # PCollection[FailedInput], one per bad input

With ``decoded=False`` every label map is still decoded and checked, but
``records`` holds the ``LabelSource`` of each good one, not its pixels: a job
that shuffles its inputs before it needs the pixels (the augment job) carries
paths and decodes again where it uses them.

The root is enumerated when the pipeline runs (on a worker, so a bucket with
millions of files does not bloat the graph); the sources are then redistributed
and decoded in parallel. An empty or missing root becomes a single
``FailedInput`` with code ``empty_root`` instead of a crash; so does every
unreadable file, unknown ID or colour, RGB-where-IDs, missing photo (with
``photos="require"``) and photo/label size mismatch (with ``photos`` other than
``"ignore"``). Exceptions that are not ``InputError`` are bugs and fail the run.
"""

from __future__ import annotations

import typing

import apache_beam as beam
import numpy as np

from amadapter.io.errors import EmptyRootError, InputError, MissingPhotoError, UnreadableImageError
from amadapter.io.keys import safe_key
from amadapter.io.label_io import check_same_size, decode_label_map, decode_photo, peek_image_size
from transforms.fileio import open_file, read_bytes
from transforms.label_sources import list_label_sources
from transforms.records import FailedInput, LabelRecord, LabelSource

# What to do with each label map's photo:
# "ignore": never open it; "check": when it exists, its size must equal the label map's
# (read from its header only); "require": it must exist, and its size must match.
PHOTO_POLICIES = ("ignore", "check", "require")
# What opening one input raises when that input cannot be read: missing, vanished, no
# permission (BeamIOError is an OSError), or a scheme whose filesystem is not installed
# (Beam raises ValueError for gs:// without apache-beam[gcp], s3:// without boto3).
READ_ERRORS = (OSError, ValueError)
_FAILURES = "failures"


class ReadLabelMapsResult(typing.NamedTuple):
    records: beam.PCollection  # of LabelRecord
    failures: beam.PCollection  # of FailedInput


class ReadLabelMaps(beam.PTransform):
    """``PBegin -> ReadLabelMapsResult(records, failures)``; arguments as ``list_label_sources``
    (``decoded``: see the module docstring).

    ``photos`` is one of ``PHOTO_POLICIES`` (default ``"ignore"``: targets of the
    augment job need no photo; an exemplar pool wants ``"require"``).
    """

    def __init__(
        self,
        root: str,
        dataset: str,
        split: str | None = None,
        label_format: str | None = None,
        photos: str = "ignore",
        decoded: bool = True,
    ):
        super().__init__()
        if photos not in PHOTO_POLICIES:
            raise ValueError(f"photos must be one of {PHOTO_POLICIES}, got {photos!r}")
        self._listing = (root, dataset, split, label_format)
        self._photos, self._decoded = photos, decoded

    def expand(self, pbegin):
        listed = (
            pbegin
            | "Root" >> beam.Create([self._listing])
            | "ListSources" >> beam.ParDo(_ListSources()).with_outputs(_FAILURES, main="sources")
        )
        decoded = (
            listed.sources
            | "Spread" >> beam.Reshuffle()
            | "Decode"
            >> beam.ParDo(_DecodeLabelMap(self._photos, self._decoded)).with_outputs(
                _FAILURES, main="records"
            )
        )
        failures = (listed[_FAILURES], decoded[_FAILURES]) | "AllFailures" >> beam.Flatten()
        return ReadLabelMapsResult(records=decoded.records, failures=failures)


class _ListSources(beam.DoFn):
    def process(self, listing):
        root, dataset, split, label_format = listing
        try:
            yield from list_label_sources(root, dataset, split, label_format)
        except EmptyRootError as error:
            yield beam.pvalue.TaggedOutput(
                _FAILURES, FailedInput.from_error(safe_key("empty_root", root), root, error)
            )


class _DecodeLabelMap(beam.DoFn):
    def __init__(self, photos: str, decoded: bool):
        self._photos, self._decoded = photos, decoded

    def process(self, source: LabelSource):
        try:
            record = read_label_record(source, self._photos)
            yield record if self._decoded else source
        except InputError as error:
            yield beam.pvalue.TaggedOutput(
                _FAILURES, FailedInput.from_error(source.key, source.label_path, error)
            )


def read_label_record(source: LabelSource, photos: str = "ignore") -> LabelRecord:
    """Read and decode one source (and check its photo per ``photos``); raises ``InputError``."""
    if photos not in PHOTO_POLICIES:
        raise ValueError(f"photos must be one of {PHOTO_POLICIES}, got {photos!r}")
    train_ids = decode_label_map(
        read_input_bytes(source.label_path), source.label_path, source.label_format
    )
    if photos == "require" and source.photo_path is None:
        raise MissingPhotoError(
            source.label_path, f"no photo for it in the {source.dataset} layout"
        )
    if photos != "ignore" and source.photo_path is not None:
        check_same_size(
            (train_ids.shape[1], train_ids.shape[0]),
            _photo_size(source.photo_path),
            source.label_path,
            source.photo_path,
        )
    return LabelRecord(
        key=source.key,
        label_path=source.label_path,
        photo_path=source.photo_path,
        train_ids=train_ids,
        dataset=source.dataset,
    )


def read_photo(path: str) -> np.ndarray:
    """A photo (e.g. an exemplar's) as (H, W, 3) uint8 RGB; raises ``UnreadableImageError``."""
    return decode_photo(read_input_bytes(path), path)


def read_input_bytes(path: str) -> bytes:
    """All bytes of an input file; a missing or unreadable file is ``UnreadableImageError``."""
    try:
        return read_bytes(path)
    except READ_ERRORS as error:
        raise UnreadableImageError(path, f"cannot read the file: {error}") from None


def _photo_size(path: str) -> tuple[int, int]:
    try:
        with open_file(path) as stream:
            return peek_image_size(stream, path)
    except READ_ERRORS as error:
        raise UnreadableImageError(path, f"cannot read the file: {error}") from None
