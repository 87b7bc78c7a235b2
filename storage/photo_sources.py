"""Enumerate the real photos under a dataset root (no label maps needed), sorted by path:
the reference set of FID and KID in ``jobs.evaluate``.

The photos of each layout are where ``storage.dataset_layouts`` says (for ``folder``:
every ``*.jpg``, ``*.jpeg`` and ``*.png`` under the root or ``root/{split}``, at any depth).

Local, ``gs://`` or ``s3://`` roots (Beam ``FileSystems``).
"""

from __future__ import annotations

from amadapter.io.errors import EmptyRootError
from storage.dataset_layouts import photo_globs, searched_split
from storage.fileio import list_files


def list_photos(root: str, dataset: str, split: str | None = None) -> list[str]:
    """Every photo of ``root`` in the ``dataset`` layout, sorted; ``EmptyRootError`` when none."""
    photos = sorted({path for pattern in photo_globs(root, dataset, split) for path in list_files(pattern)})
    if not photos:
        raise EmptyRootError(root, f"no {dataset} photos found ({searched_split(dataset, split)})")
    return photos
