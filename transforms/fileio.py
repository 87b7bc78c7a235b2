"""File access through Beam's ``FileSystems``, so local, ``gs://`` and ``s3://`` paths work.

Writes are atomic: bytes go to a temporary name beside the target and are
renamed into place only when complete, so a reader never sees a partial file
under a final name (a writer killed mid-way leaves only a ``*.tmp-*`` file).
"""

from __future__ import annotations

import contextlib
import uuid
from typing import BinaryIO, Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

TEMP_INFIX = ".tmp-"  # a temporary file is named f"{final name}{TEMP_INFIX}{random}"


def list_files(pattern: str) -> list[str]:
    """Paths matching a glob (``*``, ``?``, ``**``), sorted; empty when none match."""
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


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
