"""Enumerate the real photos under a dataset root (no label maps needed), sorted by path:
the reference set of FID and KID in ``jobs.evaluate``.

Layouts, as ``label_sources`` reads them (``split`` defaults to ``"train"`` for the two
datasets, and to the whole root for ``folder``):

``cityscapes``  ``leftImg8bit/{split}/{city}/*_leftImg8bit.png``
``bdd100k``     ``images/10k/{split}/*.jpg``
``folder``      every ``*.jpg``, ``*.jpeg`` and ``*.png`` under ``root`` (or ``root/{split}``),
                at any depth

Local, ``gs://`` or ``s3://`` roots (Beam ``FileSystems``).
"""

from __future__ import annotations

from apache_beam.io.filesystems import FileSystems

from amadapter.io.errors import EmptyRootError
from storage.fileio import list_files
from storage.label_sources import CITYSCAPES_PHOTO_SUFFIX, DATASETS, DEFAULT_SPLIT, normalise_root

FOLDER_PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def photo_globs(root: str, dataset: str, split: str | None = None) -> list[str]:
    """The globs whose matches are the photos of ``root``."""
    root = normalise_root(root)
    if dataset == "cityscapes":
        split_dir = FileSystems.join(root, "leftImg8bit", split or DEFAULT_SPLIT)
        return [FileSystems.join(split_dir, "*", "*" + CITYSCAPES_PHOTO_SUFFIX)]
    if dataset == "bdd100k":
        return [FileSystems.join(root, "images", "10k", split or DEFAULT_SPLIT, "*.jpg")]
    if dataset == "folder":
        base = FileSystems.join(root, split) if split else root
        return [FileSystems.join(base, "**" + suffix) for suffix in FOLDER_PHOTO_SUFFIXES]
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")


def list_photos(root: str, dataset: str, split: str | None = None) -> list[str]:
    """Every photo of ``root`` in the ``dataset`` layout, sorted; ``EmptyRootError`` when none."""
    photos = sorted({path for pattern in photo_globs(root, dataset, split) for path in list_files(pattern)})
    if not photos:
        raise EmptyRootError(root, f"no {dataset} photos found (split {split!r})")
    return photos
