"""WebDataset shards on any ``FileSystems`` path: atomic writing, stats, manifest parts, resume.

Files of shard ``i`` under ``output`` (``NNNNNN`` = ``i`` with six digits):

- ``{prefix}-NNNNNN.tar``: the samples (``amadapter.io.sample_format``), sorted by
  key, with fixed mtime/uid/gid/mode, so the same samples give the same bytes;
- ``{prefix}-NNNNNN.stats.json``: the commit marker, written after the tar is in
  place: ``count``, ``bytes`` (of the tar), ``class_pixels`` (class name ->
  pixels, plus ``"ignore"``), ``written`` (``[{"key", "source"}]``) and
  ``failed`` (``[{"key", "source", "error_code", "message"}]``) of the inputs
  assigned to this shard, and ``fingerprint`` (``transforms.fingerprint``: what
  rendered it) when the writer is given one;
- ``{prefix}-NNNNNN.manifest.parquet``: the shard's manifest rows
  (``transforms.manifest``), written after the tar and before the stats file, so
  every finished shard has its rows even when the run is killed later; the run's
  ``manifest.parquet`` is assembled from them (``transforms.assemble_manifest``).

The files are written under a temporary name and renamed into place, so a
writer killed at any point leaves no partial tar under a final name; a shard is
finished exactly when its stats file exists (``shard_is_complete``): rewriting a
shard first removes its old stats. Which input goes to which shard is
``transforms.assign_shards``.
"""

from __future__ import annotations

import io
import json
import posixpath
import tarfile
from typing import Iterable

import numpy as np
from apache_beam.io.filesystems import FileSystems

from amadapter.io.keys import is_safe_key
from amadapter.io.labels import CLASS_NAMES, IGNORE_ID, NUM_CLASSES
from amadapter.io.sample_format import class_pixel_counts, encode_sample
from transforms.fileio import (
    atomic_writer,
    delete,
    exists,
    list_files,
    read_bytes,
    write_atomically,
)
from transforms.manifest import write_manifest
from transforms.records import FailedInput, Sample

STATS_SUFFIX = ".stats.json"
PART_SUFFIX = ".manifest.parquet"
SOURCE_META_KEY = "source"  # Sample.meta[SOURCE_META_KEY]: the input's path, for the manifest
STATS_FORMAT_VERSION = 2  # 2: fingerprint and manifest part


def shard_name(prefix: str, index: int) -> str:
    """``{prefix}-{index:06d}.tar``; ``prefix`` must be a safe key (no dots or slashes)."""
    if not is_safe_key(prefix):
        raise ValueError(f"shard prefix {prefix!r} must match [A-Za-z0-9_-]+")
    return f"{prefix}-{index:06d}.tar"


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

    ``samples`` must come in strictly increasing key order (``WriteShards`` sorts
    them); they are streamed, never all held in memory. Each ``Sample.meta`` must
    hold ``"source"``. ``failures`` are the inputs of this shard that produced no
    sample; they are recorded in the stats. A shard may hold no samples.
    """
    failed = sorted(failures, key=lambda f: f.key)
    failed_keys = {f.key for f in failed}
    written: list[dict] = []
    pixels = np.zeros(256, dtype=np.int64)
    path, marker = shard_path(output, prefix, index), stats_path(output, prefix, index)
    if exists(marker):  # rewriting a finished shard: it is unfinished until the new stats land
        delete(marker)
    with atomic_writer(path, "application/x-tar") as stream:
        counted = _CountingWriter(stream)
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
                _add_sample(tar, encoded)
                pixels += class_pixel_counts(sample.label)
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
        "failed": [
            {"key": f.key, "source": f.source, "error_code": f.error_code, "message": f.message}
            for f in failed
        ],
    }
    if fingerprint is not None:
        stats["fingerprint"] = dict(fingerprint)
    write_manifest(part_path(output, prefix, index), manifest_rows(stats))
    write_atomically(marker, _stats_bytes(stats), "application/json")
    return stats


def shard_is_complete(output: str, prefix: str, index: int) -> bool:
    """True when shard ``index`` was fully written (its stats file, the commit marker, exists)."""
    return exists(stats_path(output, prefix, index)) and exists(shard_path(output, prefix, index))


def read_shard_stats(output: str, prefix: str, index: int) -> dict:
    return read_stats_file(stats_path(output, prefix, index))


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


def shard_keys(stats: dict) -> set[str]:
    """Every input key a finished shard accounts for, written or failed."""
    return {row["key"] for row in stats["written"]} | {row["key"] for row in stats["failed"]}


def manifest_rows(stats: dict) -> list[dict]:
    """The manifest rows (``transforms.manifest``) of one finished shard, from its stats."""
    written = [
        dict(
            key=w["key"],
            source=w["source"],
            status="written",
            shard=stats["tar"],
            error_code=None,
            error=None,
        )
        for w in stats["written"]
    ]
    failed = [
        dict(
            key=f["key"],
            source=f["source"],
            status="failed",
            shard=None,
            error_code=f["error_code"],
            error=f["message"],
        )
        for f in stats["failed"]
    ]
    return written + failed


def _add_sample(tar: tarfile.TarFile, encoded: dict) -> None:
    key = encoded["__key__"]
    for member in sorted(m for m in encoded if m != "__key__"):
        data = encoded[member]
        info = tarfile.TarInfo(f"{key}.{member}")
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(data))


def _stats_bytes(stats: dict) -> bytes:
    return (json.dumps(stats, sort_keys=True, indent=1) + "\n").encode()


class _CountingWriter:
    """Pass-through writer that counts the bytes of the tar as they are written."""

    def __init__(self, stream):
        self._stream = stream
        self.count = 0

    def write(self, data) -> int:
        self._stream.write(data)
        self.count += len(data)
        return len(data)
