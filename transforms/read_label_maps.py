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

from amadapter.io.errors import EmptyRootError, InputError
from amadapter.io.keys import safe_key
from storage.input_reads import PHOTO_POLICIES, read_label_record
from storage.label_sources import list_label_sources
from storage.records import FailedInput, LabelSource

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
