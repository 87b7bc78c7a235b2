"""The shard format, without I/O: file names, tar members, stats and their manifest rows.

``storage.shards`` writes and reads shards through Beam's ``FileSystems`` with these;
``amadapter.data`` (the trainer's reader) and anyone else can use them without Beam.
"""

from __future__ import annotations

import io
import json
import tarfile

from amadapter.io.keys import is_safe_key

STATS_SUFFIX = ".stats.json"
PART_SUFFIX = ".manifest.parquet"
SOURCE_META_KEY = "source"  # Sample.meta[SOURCE_META_KEY]: the input's path, for the manifest
FILTER_META_KEY = "quality_filter"  # Sample.meta[FILTER_META_KEY]: the quality filter's record
STATS_FORMAT_VERSION = 2  # 2: fingerprint and manifest part


def shard_name(prefix: str, index: int) -> str:
    """``{prefix}-{index:06d}.tar``; ``prefix`` must be a safe key (no dots or slashes)."""
    if not is_safe_key(prefix):
        raise ValueError(f"shard prefix {prefix!r} must match [A-Za-z0-9_-]+")
    return f"{prefix}-{index:06d}.tar"


def shard_keys(stats: dict) -> set[str]:
    """Every input key a finished shard accounts for, written, failed or filtered."""
    rows = stats["written"] + stats["failed"] + stats.get("filtered", [])
    return {row["key"] for row in rows}


def manifest_rows(stats: dict) -> list[dict]:
    """The manifest rows (``storage.manifest``) of one finished shard, from its stats."""
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
    not_written = [
        dict(
            key=f["key"],
            source=f["source"],
            status=status,
            shard=None,
            error_code=f["error_code"],
            error=f["message"],
        )
        # a shard written before the quality filter existed has no "filtered" list
        for status in ("failed", "filtered")
        for f in stats.get(status, [])
    ]
    return written + not_written


def add_sample(tar: tarfile.TarFile, encoded: dict) -> None:
    """Add one encoded sample's members (``sample_format.encode_sample``) with fixed metadata,
    so the same samples give the same tar bytes."""
    key = encoded["__key__"]
    for member in sorted(m for m in encoded if m != "__key__"):
        data = encoded[member]
        info = tarfile.TarInfo(f"{key}.{member}")
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(data))


def stats_bytes(stats: dict) -> bytes:
    """A stats file's bytes: sorted keys, so equal stats are equal files."""
    return (json.dumps(stats, sort_keys=True, indent=1) + "\n").encode()


class CountingWriter:
    """Pass-through writer that counts the bytes of the tar as they are written."""

    def __init__(self, stream):
        self._stream = stream
        self.count = 0

    def write(self, data) -> int:
        self._stream.write(data)
        self.count += len(data)
        return len(data)
