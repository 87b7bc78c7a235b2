"""Enumerate the label maps under a dataset root, deterministically (sorted by key).

All file access goes through Beam's ``FileSystems``, so a root may be a local
folder or a ``gs://`` / ``s3://`` prefix (with the matching Beam extra installed).
Every name that matches is listed, also a symlink loop or a dangling link
(``storage.fileio.list_input_files``): it fails by name when it is read.

Layouts (``split`` names a subfolder; cityscapes and bdd100k default to ``"train"``):

``cityscapes``
    labels ``gtFine/{split}/{city}/{frame}_gtFine_labelIds.png`` (format ``ids``,
    mapped to train IDs), ``..._gtFine_labelTrainIds.png`` (``train_ids``, as is) or
    ``..._gtFine_color.png`` (``color``); photos
    ``leftImg8bit/{split}/{city}/{frame}_leftImg8bit.png``. With ``label_format=None``
    each frame yields ONE source: its ``labelIds`` file when present (the official
    annotation, mapped through our own table, so a ``labelTrainIds`` file made
    with an edited table cannot change the class space), else its
    ``labelTrainIds`` file.
``bdd100k``
    labels ``labels/sem_seg/masks/{split}/{name}.png`` (``train_ids``, the default;
    palette PNGs are read by index) or ``labels/sem_seg/colormaps/{split}/{name}.png``
    (``color``); photos ``images/10k/{split}/{name}.jpg``.
``folder``
    every ``*.png`` under ``root`` (or ``root/{split}`` when a split is given), at
    any depth; ``label_format`` is required; no photos.

Keys are ``amadapter.io.keys.safe_key(frame_name, identity)`` with identity the
frame's path relative to the root without the label suffix, so a frame keeps its
key whichever label file was chosen and wherever the data is mounted.
"""

from __future__ import annotations

import os
import posixpath

from apache_beam.io.filesystems import FileSystems

from amadapter.io.errors import EmptyRootError
from amadapter.io.keys import safe_key
from amadapter.io.label_io import LABEL_FORMATS
from storage.fileio import list_input_files
from storage.records import LabelSource

DATASETS = ("cityscapes", "bdd100k", "folder")
DEFAULT_SPLIT = "train"
CITYSCAPES_LABEL_SUFFIX = {
    "ids": "_gtFine_labelIds.png",
    "train_ids": "_gtFine_labelTrainIds.png",
    "color": "_gtFine_color.png",
}
CITYSCAPES_PHOTO_SUFFIX = "_leftImg8bit.png"
BDD_LABEL_DIR = {"train_ids": "masks", "color": "colormaps"}


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
    if dataset == "cityscapes":
        sources = _cityscapes(root, split or DEFAULT_SPLIT, label_format)
    elif dataset == "bdd100k":
        sources = _bdd100k(root, split or DEFAULT_SPLIT, label_format)
    elif dataset == "folder":
        sources = _folder(root, split, label_format)
    else:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if not sources:
        raise EmptyRootError(root, f"no {dataset} label maps found ({searched_split(dataset, split)})")
    return sorted(sources, key=lambda s: s.key)


def searched_split(dataset: str, split: str | None) -> str:
    """Where a listing looked, for messages: "split 'train'" (the layouts' default filled
    in), or "the whole root" for a folder dataset without a split."""
    if split is None and dataset != "folder":
        split = DEFAULT_SPLIT
    return "the whole root" if split is None else f"split {split!r}"


def label_globs(
    root: str, dataset: str, split: str | None = None, label_format: str | None = None
) -> dict[str, str]:
    """Label format -> glob of the label maps ``list_label_sources`` reads, in reading order
    (the augment launcher peeks at one match to reject an empty root before the run)."""
    root = normalise_root(root)
    if dataset == "cityscapes":
        if label_format is not None and label_format not in CITYSCAPES_LABEL_SUFFIX:
            raise ValueError(f"cityscapes label_format must be one of {LABEL_FORMATS} or None")
        formats = [label_format] if label_format else ["train_ids", "ids"]  # later wins
        split_dir = FileSystems.join(root, "gtFine", split or DEFAULT_SPLIT)
        return {
            f: FileSystems.join(split_dir, "*", "*" + CITYSCAPES_LABEL_SUFFIX[f]) for f in formats
        }
    if dataset == "bdd100k":
        label_format = label_format or "train_ids"
        if label_format not in BDD_LABEL_DIR:
            raise ValueError(f"bdd100k label_format must be one of {tuple(BDD_LABEL_DIR)} or None")
        label_dir = FileSystems.join(
            root, "labels", "sem_seg", BDD_LABEL_DIR[label_format], split or DEFAULT_SPLIT
        )
        return {label_format: FileSystems.join(label_dir, "*.png")}
    if dataset == "folder":
        if label_format not in LABEL_FORMATS:
            raise ValueError(
                f"folder datasets need label_format in {LABEL_FORMATS}, got {label_format!r}"
            )
        base = FileSystems.join(root, split) if split else root
        return {label_format: FileSystems.join(base, "**.png")}
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")


def label_format_of(path: str, dataset: str, label_format: str | None) -> str | None:
    """The format of one named label file (an ``--exemplar-map`` entry): ``label_format``
    when given; else Cityscapes files by their suffix and BDD100K masks as ``train_ids``;
    None when it cannot be told (a folder dataset without ``label_format``)."""
    if label_format is not None:
        return label_format
    if dataset == "cityscapes":
        return next((f for f, s in CITYSCAPES_LABEL_SUFFIX.items() if path.endswith(s)), None)
    if dataset == "bdd100k":
        return "train_ids"
    return None


def _cityscapes(root: str, split: str, label_format: str | None) -> list[LabelSource]:
    chosen: dict[str, tuple[str, str]] = {}  # frame path relative to root -> (path, format)
    for fmt, pattern in label_globs(root, "cityscapes", split, label_format).items():
        suffix = CITYSCAPES_LABEL_SUFFIX[fmt]
        for path in list_input_files(pattern):
            chosen[_relative(path, root)[: -len(suffix)]] = (path, fmt)
    photo_pattern = FileSystems.join(root, "leftImg8bit", split, "*", "*" + CITYSCAPES_PHOTO_SUFFIX)
    photos = set(list_input_files(photo_pattern))
    sources = []
    for frame_rel, (path, fmt) in chosen.items():
        _, _, city, frame = frame_rel.split("/")
        photo = FileSystems.join(root, "leftImg8bit", split, city, frame + CITYSCAPES_PHOTO_SUFFIX)
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


def _bdd100k(root: str, split: str, label_format: str | None) -> list[LabelSource]:
    ((label_format, pattern),) = label_globs(root, "bdd100k", split, label_format).items()
    photos = set(list_input_files(FileSystems.join(root, "images", "10k", split, "*.jpg")))
    sources = []
    for path in list_input_files(pattern):
        name = posixpath.basename(path)[: -len(".png")]
        photo = FileSystems.join(root, "images", "10k", split, name + ".jpg")
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
    ((_, pattern),) = label_globs(root, "folder", split, label_format).items()
    sources = []
    for path in list_input_files(pattern):
        relative = _relative(path, root)[: -len(".png")]
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


def normalise_root(root: str) -> str:
    if FileSystems.get_scheme(root) is None:  # a local path: absolute, so workers agree on it
        return os.path.abspath(root)
    return root.rstrip("/")


def _relative(path: str, root: str) -> str:
    """``path`` below ``root`` with ``/`` separators."""
    return path[len(root) :].lstrip("/").replace(os.sep, "/")
