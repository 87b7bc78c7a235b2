"""Enumerate the label maps under a dataset root, deterministically (sorted by key).

All file access goes through Beam's ``FileSystems``, so a root may be a local
folder or a ``gs://`` / ``s3://`` prefix (with the matching Beam extra installed).
Every name that matches is listed, also a symlink loop or a dangling link
(``storage.fileio.list_input_files``): it fails by name when it is read.

The path rules of each dataset are ``storage.dataset_layouts``. With
``label_format=None`` a Cityscapes frame yields ONE source: its ``labelIds`` file when
present (the official annotation, mapped through our own table, so a ``labelTrainIds``
file made with an edited table cannot change the class space), else its
``labelTrainIds`` file; BDD100K reads ``masks`` (``train_ids``; palette PNGs are read by
index) or ``colormaps`` (``color``); a folder dataset needs ``label_format`` and has no
photos.

Keys are ``amadapter.io.keys.safe_key(frame_name, identity)`` with identity the
frame's path relative to the root without the label suffix, so a frame keeps its
key whichever label file was chosen and wherever the data is mounted.
"""

from __future__ import annotations

import posixpath

from amadapter.io.errors import EmptyRootError
from amadapter.io.keys import safe_key
from storage.dataset_layouts import (
    DEFAULT_SPLIT,
    Bdd100k,
    Cityscapes,
    Folder,
    layout_of,
    normalise_root,
    relative_path,
    searched_split,
)
from storage.fileio import list_input_files
from storage.records import LabelSource


def list_label_sources(
    root: str, dataset: str, split: str | None = None, label_format: str | None = None
) -> list[LabelSource]:
    """All label maps of ``dataset`` under ``root``, one ``LabelSource`` per frame, sorted by key.

    ``label_format``: ``None`` picks the dataset's default (see the module
    docstring); ``folder`` requires one of ``ids``, ``train_ids``, ``color``.
    Raises ``EmptyRootError`` when nothing matches (including a missing root) and
    ``ValueError`` for an unknown dataset or a format the dataset does not have.
    """
    root = normalise_root(root)
    sources = _LISTERS[layout_of(dataset)](root, split, label_format)
    if not sources:
        raise EmptyRootError(root, f"no {dataset} label maps found ({searched_split(dataset, split)})")
    return sorted(sources, key=lambda s: s.key)


def label_format_of(path: str, dataset: str, label_format: str | None) -> str | None:
    """The format of one named label file (an ``--exemplar-map`` entry): ``label_format``
    when given; else Cityscapes files by their suffix and BDD100K masks as ``train_ids``;
    None when it cannot be told (a folder dataset without ``label_format``)."""
    if label_format is not None:
        return label_format
    if dataset == "cityscapes":
        return next((f for f, s in Cityscapes.LABEL_SUFFIX.items() if path.endswith(s)), None)
    if dataset == "bdd100k":
        return "train_ids"
    return None


def _cityscapes(root: str, split: str | None, label_format: str | None) -> list[LabelSource]:
    split = split or DEFAULT_SPLIT
    chosen: dict[str, tuple[str, str]] = {}  # frame path relative to root -> (path, format)
    for fmt, pattern in Cityscapes.label_globs(root, split, label_format).items():
        suffix = Cityscapes.LABEL_SUFFIX[fmt]
        for path in list_input_files(pattern):
            chosen[relative_path(path, root)[: -len(suffix)]] = (path, fmt)
    photos = _listed_photos(Cityscapes, root, split)
    sources = []
    for frame_rel, (path, fmt) in chosen.items():
        _, _, city, frame = frame_rel.split("/")
        photo = Cityscapes.photo_path(root, split, city, frame)
        sources.append(
            LabelSource(
                key=safe_key(frame, f"{split}/{city}/{frame}"),
                label_path=path,
                photo_path=photo if photo in photos else None,
                label_format=fmt,
                dataset="cityscapes",
            )
        )
    return sources


def _bdd100k(root: str, split: str | None, label_format: str | None) -> list[LabelSource]:
    split = split or DEFAULT_SPLIT
    ((label_format, pattern),) = Bdd100k.label_globs(root, split, label_format).items()
    photos = _listed_photos(Bdd100k, root, split)
    sources = []
    for path in list_input_files(pattern):
        name = posixpath.basename(path)[: -len(".png")]
        photo = Bdd100k.photo_path(root, split, name)
        sources.append(
            LabelSource(
                key=safe_key(name, f"{split}/{name}"),
                label_path=path,
                photo_path=photo if photo in photos else None,
                label_format=label_format,
                dataset="bdd100k",
            )
        )
    return sources


def _folder(root: str, split: str | None, label_format: str | None) -> list[LabelSource]:
    ((_, pattern),) = Folder.label_globs(root, split, label_format).items()  # checks the format
    sources = []
    for path in list_input_files(pattern):
        relative = relative_path(path, root)[: -len(".png")]
        sources.append(
            LabelSource(
                key=safe_key(posixpath.basename(relative), relative),
                label_path=path,
                photo_path=None,
                label_format=label_format,
                dataset="folder",
            )
        )
    return sources


_LISTERS = {Cityscapes: _cityscapes, Bdd100k: _bdd100k, Folder: _folder}


def _listed_photos(layout, root: str, split: str) -> set[str]:
    """Every photo name of the layout's photo globs (the ones a label map's photo is looked up in)."""
    return {path for pattern in layout.photo_globs(root, split) for path in list_input_files(pattern)}
