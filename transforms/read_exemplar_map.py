"""Read an ``--exemplar-map`` file: the targets and, per target, which exemplar lends what.

JSON Lines, one object per target (relative paths are relative to the map file)::

    {"label": "city/a_gtFine_labelIds.png",
     "regions": [{"photo": "rain.png", "label": "rain_gtFine_labelIds.png", "classes": ["road", "sky"]},
                 {"photo": "night.png", "label": "night_gtFine_labelIds.png", "classes": "rest"},
                 {"photo": "dusk.png", "label": "dusk_gtFine_labelIds.png", "mask": "car_mask.png"}]}

``classes`` lists Cityscapes train class names (``amadapter.io.labels.CLASS_NAMES``)
or train IDs, or is ``"rest"`` (every pixel no other region claims); ``mask`` names
a painted region instead (a PNG at the target's size, nonzero = lent). Pixels no
region claims read the first region's exemplar, or none (``--unassigned``).

``ReadExemplarMap(path, dataset, label_format) -> (records, failures)``: ``records``
holds a ``MappedLabel`` per usable line (the target's ``LabelSource`` and its
``LentExemplar``s); every unusable line is one ``FailedInput`` (``bad_exemplar_map``
for the line itself, the target's own error for an unreadable label map), so inputs
= lines. Exemplar files are read where the batch is rendered (``transforms.load_batch``):
a missing photo or an overlapping mask fails that target there, with its own row.

Keys: a target's is its frame's name plus a hash of the label path as written and
the regions, so one label map may appear on several lines with different regions (one
sample each); identical lines are one input. An exemplar's hashes its label path and
its photo, so one label map lent with two photos is two exemplars.
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
import typing

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from amadapter.io.errors import ExemplarMapError, InputError
from amadapter.io.keys import safe_key
from amadapter.io.labels import CLASS_NAMES, NUM_CLASSES
from storage.fileio import open_file
from storage.dataset_layouts import Cityscapes
from storage.label_sources import label_format_of
from storage.input_reads import read_label_record
from storage.records import FailedInput, LabelSource, LentExemplar

REST = "rest"
_FAILURES = "failures"
_CLASS_IDS = {name: i for i, name in enumerate(CLASS_NAMES)}


class MappedLabel(typing.NamedTuple):
    """A target named by an exemplar map and the exemplars it reads (the first lends the rest
    unless another region is the rest)."""

    source: LabelSource
    lent: tuple[LentExemplar, ...]


class ReadExemplarMapResult(typing.NamedTuple):
    records: beam.PCollection  # of MappedLabel
    failures: beam.PCollection  # of FailedInput


class ReadExemplarMap(beam.PTransform):
    """``PBegin -> ReadExemplarMapResult``; see the module docstring. ``dataset`` and
    ``label_format`` tell each label file's format (``label_sources.label_format_of``)."""

    def __init__(self, path: str, dataset: str, label_format: str | None = None):
        super().__init__()
        if FileSystems.get_scheme(path) is None:
            path = os.path.abspath(path)  # relative paths in it resolve alike on every worker
        self._path, self._dataset, self._label_format = path, dataset, label_format

    def expand(self, pbegin):
        parsed = (
            pbegin
            | "MapFile" >> beam.Create([self._path])
            | "Lines" >> beam.FlatMap(numbered_lines)
            | "Spread" >> beam.Reshuffle()
            | "Parse"
            >> beam.ParDo(_ParseLine(self._path, self._dataset, self._label_format)).with_outputs(
                _FAILURES, main="records"
            )
        )
        unique = (
            parsed.records
            | "ByKey" >> beam.Map(lambda m: (m.source.key, m))
            | "Deduplicate" >> beam.CombinePerKey(lambda mapped: min(mapped, key=repr))
            | "Values" >> beam.Values()
        )
        return ReadExemplarMapResult(records=unique, failures=parsed[_FAILURES])


def numbered_lines(path: str):
    """(line number from 1, text) of every non-blank line; read as a stream, not held."""
    with open_file(path) as stream:
        for number, raw in enumerate(stream, 1):
            text = raw.decode("utf-8", errors="replace").strip()
            if text:
                yield number, text


class _ParseLine(beam.DoFn):
    def __init__(self, path: str, dataset: str, label_format: str | None):
        self._path, self._dataset, self._label_format = path, dataset, label_format

    def process(self, numbered):
        number, text = numbered
        where = f"{self._path} line {number}"
        try:
            mapped = parse_map_line(text, where, posixpath.dirname(self._path), self._dataset, self._label_format)
        except ExemplarMapError as error:
            key = safe_key(f"{posixpath.basename(self._path)}_line{number}", where)
            yield beam.pvalue.TaggedOutput(_FAILURES, FailedInput.from_error(key, where, error))
            return
        try:
            read_label_record(mapped.source)  # the target must decode, as any input
        except InputError as error:
            failure = FailedInput.from_error(mapped.source.key, mapped.source.label_path, error)
            yield beam.pvalue.TaggedOutput(_FAILURES, failure)
            return
        yield mapped


def parse_map_line(
    text: str, where: str, base: str, dataset: str, label_format: str | None
) -> MappedLabel:
    """One map line -> ``MappedLabel``; raises ``ExemplarMapError`` naming ``where``."""
    try:
        line = json.loads(text)
    except json.JSONDecodeError as error:
        raise ExemplarMapError(where, f"not a JSON object: {error}") from None
    if not isinstance(line, dict) or set(line) != {"label", "regions"}:
        raise ExemplarMapError(where, 'a line is an object with exactly "label" and "regions"')
    label = _path_field(line, "label", where)
    regions = line["regions"]
    if not isinstance(regions, list) or not regions:
        raise ExemplarMapError(where, '"regions" must be a non-empty list')
    target = _source(label, base, dataset, label_format, where, photo=None)
    lent, claimed, rest = [], {}, None
    for i, region in enumerate(regions):
        lent.append(_lent(region, i, base, dataset, label_format, where, claimed))
        if lent[-1].is_rest:
            if rest is not None:
                raise ExemplarMapError(where, f'regions {rest} and {i} are both "rest"')
            rest = i
    if rest is not None:  # the rest region goes first: it is what unclaimed pixels read
        lent.insert(0, lent.pop(rest))
    identity = json.dumps([label, regions], sort_keys=True)
    frame = posixpath.basename(label)
    for suffix in (*Cityscapes.LABEL_SUFFIX.values(), ".png"):
        if frame.endswith(suffix):
            frame = frame[: -len(suffix)]
            break
    return MappedLabel(dataclasses.replace(target, key=safe_key(frame, identity)), tuple(lent))


def _lent(region, i: int, base: str, dataset: str, label_format, where: str, claimed: dict):
    if not isinstance(region, dict):
        raise ExemplarMapError(where, f"region {i} is not an object")
    unknown = set(region) - {"photo", "label", "classes", "mask"}
    if unknown or not {"photo", "label"} <= set(region):
        raise ExemplarMapError(
            where, f'region {i} needs "photo", "label" and "classes" or "mask" (got {sorted(region)})'
        )
    if ("classes" in region) == ("mask" in region):
        raise ExemplarMapError(where, f'region {i} needs exactly one of "classes" and "mask"')
    photo = _resolve(_path_field(region, "photo", where), base)
    source = _source(_path_field(region, "label", where), base, dataset, label_format, where, photo)
    if "mask" in region:
        return LentExemplar(source, mask_path=_resolve(_path_field(region, "mask", where), base))
    if region["classes"] == REST:
        return LentExemplar(source)
    return LentExemplar(source, classes=_class_ids(region["classes"], i, where, claimed))


def _class_ids(classes, i: int, where: str, claimed: dict) -> tuple[int, ...]:
    """Train IDs of a region's "classes" (names or IDs); two regions may not share one."""
    if not isinstance(classes, list) or not classes:
        raise ExemplarMapError(where, f'region {i}: "classes" is a list of class names or train IDs, or "rest"')
    ids = []
    for name in classes:
        if isinstance(name, int) and not isinstance(name, bool) and 0 <= name < NUM_CLASSES:
            train_id = name
        elif isinstance(name, str) and name in _CLASS_IDS:
            train_id = _CLASS_IDS[name]
        else:
            raise ExemplarMapError(
                where, f"region {i}: unknown class {name!r} (train IDs 0..{NUM_CLASSES - 1} or one "
                f"of {', '.join(CLASS_NAMES)})"
            )
        if train_id in claimed:
            raise ExemplarMapError(
                where, f"overlapping assignments: regions {claimed[train_id]} and {i} both lend "
                f"{CLASS_NAMES[train_id]}"
            )
        claimed[train_id] = i
        ids.append(train_id)
    return tuple(ids)


def _path_field(obj: dict, name: str, where: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise ExemplarMapError(where, f'"{name}" must be a path')
    if "\x00" in value:  # no filesystem takes it: open() would raise a ValueError, not a row
        raise ExemplarMapError(where, f'"{name}" holds a NUL character: {value!r}')
    return value


def _resolve(path: str, base: str) -> str:
    """``path`` as is when absolute or a URL, else relative to the map file's folder."""
    if FileSystems.get_scheme(path) is not None or posixpath.isabs(path):
        return path
    return FileSystems.join(base, path)


def _source(label: str, base: str, dataset: str, label_format, where: str, photo) -> LabelSource:
    fmt = label_format_of(label, dataset, label_format)
    if fmt is None:
        raise ExemplarMapError(
            where, f"cannot tell the label format of {label} (a {dataset} name?); give --label-format"
        )
    # An exemplar is its photo AND its label map: two lines may pair one label map with two
    # photos, and the batch decodes (and the model reads) each distinct key once.
    identity = json.dumps([label, photo])
    return LabelSource(safe_key(posixpath.basename(label), identity), _resolve(label, base), photo, fmt, dataset)
