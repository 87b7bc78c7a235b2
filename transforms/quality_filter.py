"""``FilterSamples``: the quality filter on each rendered shard, right after synthesis.

``ShardResult -> ShardResult``, fused with the synthesis step before it and the
writer after it (no shuffle: the images never leave the worker that rendered
them). Per sample (``amadapter.filtering``): per-pixel cross-entropy of the
filter segmenter against the sample's label; pixels above ``margin`` x their
class's reference loss become 255 in the label; a sample whose kept share falls
below ``min_kept`` is not written and becomes a ``filtered`` row
(``SampleFilteredError``); each written sample's ``json`` records its kept share
and the filter model's sha256 (``FILTER_META_KEY``).

The reference losses are measured once, on the launcher, and travel in the
``QualityFilterSpec`` (``pipeline.filter_reference``): every worker applies the
same numbers, and they are part of the render fingerprint. The segmenter is
loaded once per worker process (``Shared``) and used from every thread of it.

Metrics (namespace ``augment``): ``filtered`` (samples dropped) and
``filtered_pixels`` (pixels set to ignore in the samples written).
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.shared import Shared

from amadapter.filtering import QualityFilter, ReferenceLosses, load_segmentation_model
from amadapter.io.errors import SampleFilteredError
from amadapter.io.shard_format import FILTER_META_KEY, SOURCE_META_KEY
from storage.records import FailedInput, Sample
from storage.fileio import local_model_directory
from transforms.job_metrics import METRICS_NAMESPACE
from transforms.synthesis_request import ShardResult


@dataclasses.dataclass(frozen=True)
class QualityFilterSpec:
    """What every worker needs to filter: the segmenter directory (local or remote) and its
    sha256 (``storage.fingerprint.checkpoint_sha256``), the reference losses and where
    they were measured (``reference_source``, as the user named it), the rule's
    ``margin`` and ``min_kept``, and the torch ``device``."""

    segmenter: str
    model_sha256: str
    reference: ReferenceLosses
    reference_source: str
    margin: float
    min_kept: float
    device: str = "cpu"

    def fingerprint(self) -> dict:
        """The filter's part of the render fingerprint (JSON values)."""
        return {
            "model_sha256": self.model_sha256,
            "margin": float(self.margin),
            "min_kept": float(self.min_kept),
            "reference": self.reference_source,
            "reference_losses": list(self.reference.losses),
        }


class FilterSamples(beam.DoFn):
    """Filter each ``ShardResult``'s samples; see the module docstring."""

    def __init__(self, spec: QualityFilterSpec):
        self._spec = spec
        self._shared = Shared()  # one segmenter per worker process, shared by its threads

    def setup(self):
        spec = self._spec

        def load() -> QualityFilter:
            with local_model_directory(spec.segmenter) as directory:
                model = load_segmentation_model(directory, spec.device)
            return QualityFilter(model, spec.reference, spec.margin)

        self._filter = self._shared.acquire(load, tag=(spec.model_sha256, spec.device))
        self._dropped = Metrics.counter(METRICS_NAMESPACE, "filtered")
        self._pixels = Metrics.counter(METRICS_NAMESPACE, "filtered_pixels")

    def process(self, result: ShardResult):
        kept, dropped = [], []
        for sample in result.samples:
            outcome = self._filter.apply(sample.image, sample.label)
            if outcome.kept_share < self._spec.min_kept:
                dropped.append(self._filtered_row(sample, outcome.kept_share))
                continue
            record = {
                "kept_share": round(outcome.kept_share, 6),
                "dropped_pixels": outcome.dropped,
                "model_sha256": self._spec.model_sha256,
                "margin": self._spec.margin,
                "min_kept": self._spec.min_kept,
            }
            meta = {**sample.meta, FILTER_META_KEY: record}
            kept.append(Sample(sample.key, sample.image, outcome.label, meta))
            self._pixels.inc(outcome.dropped)
        self._dropped.inc(len(dropped))
        yield ShardResult(result.shard, tuple(kept), result.failures + tuple(dropped))

    def _filtered_row(self, sample: Sample, kept_share: float) -> FailedInput:
        source = str(sample.meta[SOURCE_META_KEY])
        reason = (
            f"the quality filter kept {kept_share:.1%} of its labelled pixels, below "
            f"--filter-min-kept {self._spec.min_kept:g} (filter {self._spec.model_sha256[:12]}, "
            f"margin {self._spec.margin:g})"
        )
        return FailedInput.from_error(sample.key, source, SampleFilteredError(source, reason))
