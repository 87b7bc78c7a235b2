"""File access through Beam's ``FileSystems``, so local, ``gs://`` and ``s3://`` paths work.

Writes are atomic: bytes go to a temporary name beside the target and are
renamed into place only when complete, so a reader never sees a partial file
under a final name (a writer killed mid-way leaves only a ``*.tmp-*`` file).
A remote model directory is read through a local copy (``local_model_directory``):
diffusers, transformers and safetensors open local paths only.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import tempfile
import uuid
from typing import BinaryIO, Iterator

from apache_beam.io.filesystem import CompressionTypes, FileMetadata
from apache_beam.io.filesystems import FileSystems

TEMP_INFIX = ".tmp-"  # a temporary file is named f"{final name}{TEMP_INFIX}{random}"
_GLOB_START = re.compile(r"[*?[]")


def list_files(pattern: str) -> list[str]:
    """Paths matching a glob (``*``, ``?``, ``**``), sorted; empty when none match."""
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def list_input_files(pattern: str, limit: int | None = None) -> list[str]:
    """``list_files`` for inputs (at most ``limit``): a local listing also keeps the names
    that cannot be stat'ed (a symlink loop, a dangling link), which Beam's ``match`` drops
    without a word; reading one then fails by name (``UnreadableImageError``), so it gets a
    manifest row like any bad input. Object stores have no links: Beam lists them."""
    if FileSystems.get_scheme(pattern) is not None:
        return sorted(m.path for m in FileSystems.match([pattern], [limit])[0].metadata_list)
    glob = _GLOB_START.search(pattern)
    if glob is None:
        return [pattern] if os.path.lexists(pattern) else []
    folder = os.path.dirname(pattern[: glob.start()])
    named = (
        FileMetadata(os.path.join(parent, name), 0)
        for parent, _, names in os.walk(folder)  # Beam's own walk: links to folders not entered
        for name in names
    )
    matches = FileSystems.get_filesystem(pattern).match_files(named, pattern)
    return sorted(m.path for m in itertools.islice(matches, limit))


def open_file(path: str) -> BinaryIO:
    """A readable binary stream, never decompressed by file extension."""
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def read_bytes(path: str) -> bytes:
    with open_file(path) as stream:
        return stream.read()


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def delete(path: str) -> None:
    FileSystems.delete([path])


@contextlib.contextmanager
def atomic_writer(path: str, mime_type: str = "application/octet-stream") -> Iterator[BinaryIO]:
    """Yield a stream onto a temporary name; rename it to ``path`` on success, delete on error."""
    temp = f"{path}{TEMP_INFIX}{uuid.uuid4().hex[:12]}"
    stream = FileSystems.create(temp, mime_type, CompressionTypes.UNCOMPRESSED)
    try:
        with stream:
            yield stream
    except BaseException:
        delete(temp)
        raise
    FileSystems.rename([temp], [path])


def write_atomically(path: str, data: bytes, mime_type: str = "application/octet-stream") -> None:
    with atomic_writer(path, mime_type) as stream:
        stream.write(data)


def remove_temporaries(folder: str) -> list[str]:
    """Delete the temporary files killed writers left anywhere under ``folder``; returns them.
    Only safe once no writer is running there (the augment job calls it after its run)."""
    leftovers = list_files(FileSystems.join(folder, f"**{TEMP_INFIX}*"))
    if leftovers:
        FileSystems.delete(leftovers)
    return leftovers


@contextlib.contextmanager
def local_model_directory(path: str):
    """``path`` itself when local; else a copy of the remote directory in a local temporary
    folder, removed on exit (once loaded, the weights live in memory)."""
    if FileSystems.get_scheme(path) is None:
        yield path
        return
    local = tempfile.mkdtemp(prefix="amadapter-model-")
    try:
        root = path.rstrip("/") + "/"
        for remote in list_files(root + "**"):
            target = os.path.join(local, remote[len(root) :])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open_file(remote) as source, open(target, "wb") as sink:
                while chunk := source.read(1 << 24):
                    sink.write(chunk)
        yield local
    finally:
        shutil.rmtree(local, ignore_errors=True)
