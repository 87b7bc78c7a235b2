"""Turn each label map into the samples to render: (label map, sample index) -> ``TargetRef``.

A ``TargetRef`` names its label map by path (a ``LabelSource``), so what travels
through the shuffles before synthesis is a few hundred bytes per sample, not the
decoded map; ``load_target`` decodes it into a ``Target`` where the pixels are
needed. A label map read with key ``K`` gives ``--samples-per-label`` targets with keys
``K-s0``, ``K-s1``, ... (still WebDataset-safe: ``K`` is a safe key and the
suffix adds only ``-``, ``s`` and digits). Each target's seed is derived from
its key and the run seed alone (``sample_seed``), never from worker order or
timing, so a sample is the same whichever worker renders it, in whichever run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

import apache_beam as beam

from storage.input_reads import read_label_record
from transforms.read_exemplar_map import MappedLabel
from storage.records import LabelRecord, LabelSource, LentExemplar

_SAMPLE_SUFFIX = re.compile(r"-s[0-9]+$")


@dataclasses.dataclass(frozen=True)
class TargetRef:
    """One sample to render, by reference: its label map's ``label`` source (paths),
    ``index`` among that map's samples and ``seed``; ``lent``: the exemplars the user
    named for it (``--exemplar-map``), empty when they are to be retrieved."""

    key: str
    label: LabelSource
    index: int
    seed: int
    lent: tuple[LentExemplar, ...] = ()

    @property
    def source(self) -> str:
        """The input path reported in the manifest: the label map's."""
        return self.label.label_path


@dataclasses.dataclass(frozen=True, eq=False)
class Target:
    """A ``TargetRef`` with its label map decoded (``load_target``): it follows
    ``record``'s label map; ``index`` counts the samples of that label map; ``seed``
    drives its initial noise and exemplar draw."""

    key: str
    record: LabelRecord
    index: int
    seed: int

    @property
    def source(self) -> str:
        """The input path reported in the manifest: the label map's."""
        return self.record.label_path


def sample_key(label_key: str, index: int) -> str:
    return f"{label_key}-s{index}"


def label_key(key: str) -> str:
    """The label map's key of a sample key (``sample_key``'s inverse); other keys as they are."""
    return _SAMPLE_SUFFIX.sub("", key)


def sample_seed(key: str, run_seed: int) -> int:
    """A 63-bit seed from (sample key, run seed): sha256, so nearby keys get unrelated seeds."""
    digest = hashlib.sha256(f"{int(run_seed)}/{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def expand_targets(
    label: LabelSource | MappedLabel, samples_per_label: int, run_seed: int
) -> list[TargetRef]:
    source, lent = (label.source, label.lent) if isinstance(label, MappedLabel) else (label, ())
    keys = (sample_key(source.key, i) for i in range(samples_per_label))
    return [TargetRef(k, source, i, sample_seed(k, run_seed), lent) for i, k in enumerate(keys)]


def load_target(ref: TargetRef) -> Target:
    """Decode the sample's label map; raises its ``InputError`` (e.g. the file vanished)."""
    return Target(ref.key, read_label_record(ref.label), ref.index, ref.seed)


class ExpandSamples(beam.PTransform):
    """``PCollection[LabelSource | MappedLabel] -> PCollection[TargetRef]``,
    ``samples_per_label`` per source."""

    def __init__(self, samples_per_label: int, run_seed: int):
        super().__init__()
        if samples_per_label < 1:
            raise ValueError(f"samples_per_label must be at least 1, got {samples_per_label}")
        self._samples_per_label, self._run_seed = samples_per_label, run_seed

    def expand(self, sources):
        return sources | "Expand" >> beam.FlatMap(
            expand_targets, self._samples_per_label, self._run_seed
        )
