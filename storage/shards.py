"""WebDataset shards on any ``FileSystems`` path: atomic writing, stats, manifest parts, resume.

Files of shard ``i`` under ``output`` (``NNNNNN`` = ``i`` with six digits):

- ``{prefix}-NNNNNN.tar``: the samples (``amadapter.io.sample_format``), sorted by
  key, with fixed mtime/uid/gid/mode, so the same samples give the same bytes;
- ``{prefix}-NNNNNN.stats.json``: the commit marker, written after the tar is in
  place: ``count``, ``bytes`` (of the tar), ``class_pixels`` (class name ->
  pixels, plus ``"ignore"``), ``written`` (``[{"key", "source"}]``) and
  ``failed`` (``[{"key", "source", "error_code", "message"}]``) of the inputs
  assigned to this shard, ``filtered`` (the same rows, code ``filtered``: samples the
  quality filter dropped, ``transforms.quality_filter``) and ``filtered_pixels``
  (pixels it set to ignore in the written samples), and ``fingerprint`` (``storage.fingerprint``: what
  rendered it) when the writer is given one;
- ``{prefix}-NNNNNN.manifest.parquet``: the shard's manifest rows
  (``storage.manifest``), written after the tar and before the stats file, so
  every finished shard has its rows even when the run is killed later; the run's
  ``manifest.parquet`` is assembled from them (``transforms.assemble_manifest``).

The files are written under a temporary name and renamed into place, so a
writer killed at any point leaves no partial tar under a final name; a shard is
finished exactly when its stats file exists (``shard_is_complete``): rewriting a
shard first removes its old stats. Which input goes to which shard is
``transforms.assign_shards``; names, tar members and stats rows without I/O are
``amadapter.io.shard_format``.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from typing import Iterable

import numpy as np
from apache_beam.io.filesystems import FileSystems

from amadapter.io.labels import CLASS_NAMES, IGNORE_ID
from amadapter.io.sample_format import class_pixel_counts, encode_sample
from amadapter.io.errors import SampleFilteredError
from amadapter.io.shard_format import (
    FILTER_META_KEY,
    PART_SUFFIX,
    SOURCE_META_KEY,
    STATS_FORMAT_VERSION,
    STATS_SUFFIX,
    CountingWriter,
    add_sample,
    manifest_rows,
    shard_name,
    stats_bytes,
)
from storage.fileio import (
    atomic_writer,
    delete,
    exists,
    list_files,
    read_bytes,
    write_atomically,
)
from storage.manifest import write_manifest
from storage.records import FailedInput, Sample

def shard_path(output: str, prefix: str, index: int) -> str:
    return FileSystems.join(output, shard_name(prefix, index))


def stats_path(output: str, prefix: str, index: int) -> str:
    return FileSystems.join(output, shard_name(prefix, index)[: -len(".tar")] + STATS_SUFFIX)


def part_path(output: str, prefix: str, index: int) -> str:
    """The shard's manifest part."""
    return FileSystems.join(output, shard_name(prefix, index)[: -len(".tar")] + PART_SUFFIX)


def write_shard(
    output: str,
    prefix: str,
    index: int,
    samples: Iterable[Sample],
    failures: Iterable[FailedInput] = (),
    image_format: str = "jpg",
    fingerprint: dict | None = None,
) -> dict:
    """Write shard ``index`` atomically, then its manifest part, then its stats file (with
    ``fingerprint``, when given); return the stats.

    ``samples`` must come in strictly increasing key order (``WriteShardResults`` sorts
    them); they are streamed, never all held in memory. Each ``Sample.meta`` must
    hold ``"source"``. ``failures`` are the inputs of this shard that produced no
    sample; they are recorded in the stats. A shard may hold no samples. Failures with
    code ``filtered`` are listed apart (``filtered``), with the pixels the quality filter
    dropped from the written samples (``filtered_pixels``).
    """
    failed = sorted(failures, key=lambda f: f.key)
    failed_keys = {f.key for f in failed}
    written: list[dict] = []
    pixels = np.zeros(256, dtype=np.int64)
    filtered_pixels = 0
    path, marker = shard_path(output, prefix, index), stats_path(output, prefix, index)
    if exists(marker):  # rewriting a finished shard: it is unfinished until the new stats land
        delete(marker)
    with atomic_writer(path, "application/x-tar") as stream:
        counted = CountingWriter(stream)
        with tarfile.open(fileobj=counted, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for sample in samples:
                if written and sample.key <= written[-1]["key"]:
                    raise ValueError(
                        f"samples must be sorted by unique key: {sample.key!r} came late"
                    )
                if sample.key in failed_keys:
                    raise ValueError(f"{sample.key}: both written and failed in shard {index}")
                if SOURCE_META_KEY not in sample.meta:
                    raise ValueError(
                        f"{sample.key}: meta needs {SOURCE_META_KEY!r} (the input path)"
                    )
                encoded = encode_sample(
                    sample.key, sample.image, sample.label, sample.meta, image_format
                )
                add_sample(tar, encoded)
                pixels += class_pixel_counts(sample.label)
                filtered_pixels += sample.meta.get(FILTER_META_KEY, {}).get("dropped_pixels", 0)
                written.append({"key": sample.key, "source": str(sample.meta[SOURCE_META_KEY])})
    stats = {
        "format_version": STATS_FORMAT_VERSION,
        "shard": index,
        "tar": posixpath.basename(path),
        "image_format": image_format,
        "count": len(written),
        "bytes": counted.count,
        "class_pixels": {
            **{name: int(pixels[i]) for i, name in enumerate(CLASS_NAMES)},
            "ignore": int(pixels[IGNORE_ID]),
        },
        "written": written,
        "failed": _rows(f for f in failed if f.error_code != SampleFilteredError.code),
        "filtered": _rows(f for f in failed if f.error_code == SampleFilteredError.code),
        "filtered_pixels": filtered_pixels,
    }
    if fingerprint is not None:
        stats["fingerprint"] = dict(fingerprint)
    write_manifest(part_path(output, prefix, index), manifest_rows(stats))
    write_atomically(marker, stats_bytes(stats), "application/json")
    return stats


def _rows(failures: Iterable[FailedInput]) -> list[dict]:
    return [
        {"key": f.key, "source": f.source, "error_code": f.error_code, "message": f.message}
        for f in failures
    ]


def shard_is_complete(output: str, prefix: str, index: int) -> bool:
    """True when shard ``index`` was fully written (its stats file, the commit marker, exists)."""
    return exists(stats_path(output, prefix, index)) and exists(shard_path(output, prefix, index))


def read_stats_file(path: str) -> dict:
    return json.loads(read_bytes(path))


def completed_shards(output: str, prefix: str) -> list[int]:
    """Indices of the finished shards under ``output``, sorted."""
    pattern = FileSystems.join(output, f"{prefix}-*{STATS_SUFFIX}")
    names = (
        posixpath.basename(p)[len(prefix) + 1 : -len(STATS_SUFFIX)] for p in list_files(pattern)
    )
    return sorted(
        int(n) for n in names if n.isdigit() and shard_is_complete(output, prefix, int(n))
    )
