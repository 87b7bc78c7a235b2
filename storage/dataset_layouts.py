"""Where each dataset keeps its label maps and photos: the path rules, one class per
dataset, read by ``label_sources`` (label maps and their photos) and ``photo_sources``
(photos alone). Adding a dataset is a class here and its entry in ``LAYOUTS``.

``split`` names a subfolder; Cityscapes and BDD100K default to ``"train"``, a folder
dataset to its whole root. Roots are local paths (made absolute, so workers agree) or
``gs://`` / ``s3://`` prefixes.
"""

from __future__ import annotations

import os
import posixpath

from apache_beam.io.filesystems import FileSystems

from amadapter.io.label_io import LABEL_FORMATS

DEFAULT_SPLIT = "train"


class Cityscapes:
    """``gtFine/{split}/{city}/{frame}_gtFine_{labelIds,labelTrainIds,color}.png`` and
    ``leftImg8bit/{split}/{city}/{frame}_leftImg8bit.png``."""

    LABEL_SUFFIX = {
        "ids": "_gtFine_labelIds.png",
        "train_ids": "_gtFine_labelTrainIds.png",
        "color": "_gtFine_color.png",
    }
    PHOTO_SUFFIX = "_leftImg8bit.png"

    @classmethod
    def label_globs(cls, root: str, split: str | None, label_format: str | None) -> dict[str, str]:
        if label_format is not None and label_format not in cls.LABEL_SUFFIX:
            raise ValueError(f"cityscapes label_format must be one of {LABEL_FORMATS} or None")
        formats = [label_format] if label_format else ["train_ids", "ids"]  # later wins
        split_dir = FileSystems.join(root, "gtFine", split or DEFAULT_SPLIT)
        return {f: FileSystems.join(split_dir, "*", "*" + cls.LABEL_SUFFIX[f]) for f in formats}

    @classmethod
    def photo_globs(cls, root: str, split: str | None) -> list[str]:
        return [FileSystems.join(root, "leftImg8bit", split or DEFAULT_SPLIT, "*", "*" + cls.PHOTO_SUFFIX)]

    @classmethod
    def photo_path(cls, root: str, split: str | None, city: str, frame: str) -> str:
        return FileSystems.join(root, "leftImg8bit", split or DEFAULT_SPLIT, city, frame + cls.PHOTO_SUFFIX)

    @classmethod
    def photo_frame(cls, root: str, split: str | None, photo: str) -> tuple[str, str]:
        """(frame name, identity) of a photo: its label map's key parts (``safe_key``)."""
        city, name = relative_path(photo, root).split("/")[-2:]
        frame = name[: -len(cls.PHOTO_SUFFIX)]
        return frame, f"{split or DEFAULT_SPLIT}/{city}/{frame}"


class Bdd100k:
    """``labels/sem_seg/{masks,colormaps}/{split}/{name}.png`` and
    ``images/10k/{split}/{name}.jpg``."""

    LABEL_DIR = {"train_ids": "masks", "color": "colormaps"}

    @classmethod
    def label_globs(cls, root: str, split: str | None, label_format: str | None) -> dict[str, str]:
        label_format = label_format or "train_ids"
        if label_format not in cls.LABEL_DIR:
            raise ValueError(f"bdd100k label_format must be one of {tuple(cls.LABEL_DIR)} or None")
        label_dir = FileSystems.join(root, "labels", "sem_seg", cls.LABEL_DIR[label_format], split or DEFAULT_SPLIT)
        return {label_format: FileSystems.join(label_dir, "*.png")}

    @classmethod
    def photo_globs(cls, root: str, split: str | None) -> list[str]:
        return [FileSystems.join(root, "images", "10k", split or DEFAULT_SPLIT, "*.jpg")]

    @classmethod
    def photo_path(cls, root: str, split: str | None, name: str) -> str:
        return FileSystems.join(root, "images", "10k", split or DEFAULT_SPLIT, name + ".jpg")

    @classmethod
    def photo_frame(cls, root: str, split: str | None, photo: str) -> tuple[str, str]:
        name = posixpath.basename(photo)[: -len(".jpg")]
        return name, f"{split or DEFAULT_SPLIT}/{name}"


class Folder:
    """Every ``*.png`` under the root (or ``root/{split}``) at any depth is a label map, in the
    ``label_format`` given; photos (for ``photo_sources``) are its ``.jpg``, ``.jpeg`` and
    ``.png`` files. Label maps have no photos."""

    PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")

    @classmethod
    def label_globs(cls, root: str, split: str | None, label_format: str | None) -> dict[str, str]:
        if label_format not in LABEL_FORMATS:
            raise ValueError(f"folder datasets need label_format in {LABEL_FORMATS}, got {label_format!r}")
        return {label_format: FileSystems.join(cls._base(root, split), "**.png")}

    @classmethod
    def photo_globs(cls, root: str, split: str | None) -> list[str]:
        return [FileSystems.join(cls._base(root, split), "**" + suffix) for suffix in cls.PHOTO_SUFFIXES]

    @classmethod
    def photo_frame(cls, root: str, split: str | None, photo: str) -> tuple[str, str]:
        """A photo's path below the root without its extension names it, as a label map's does."""
        relative = posixpath.splitext(relative_path(photo, root))[0]
        return posixpath.basename(relative), relative

    @staticmethod
    def _base(root: str, split: str | None) -> str:
        return FileSystems.join(root, split) if split else root


LAYOUTS = {"cityscapes": Cityscapes, "bdd100k": Bdd100k, "folder": Folder}
DATASETS = tuple(LAYOUTS)


def layout_of(dataset: str):
    """The layout class of ``dataset``; ``ValueError`` for an unknown one."""
    if dataset not in LAYOUTS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    return LAYOUTS[dataset]


def label_globs(root: str, dataset: str, split: str | None = None, label_format: str | None = None) -> dict[str, str]:
    """Label format -> glob of the label maps of ``root``, in reading order (the augment
    launcher peeks at one match to reject an empty root before the run)."""
    return layout_of(dataset).label_globs(normalise_root(root), split, label_format)


def photo_globs(root: str, dataset: str, split: str | None = None) -> list[str]:
    """The globs whose matches are the photos of ``root``."""
    return layout_of(dataset).photo_globs(normalise_root(root), split)


def searched_split(dataset: str, split: str | None) -> str:
    """Where a listing looked, for messages: "split 'train'" (the layouts' default filled
    in), or "the whole root" for a folder dataset without a split."""
    if split is None and dataset != "folder":
        split = DEFAULT_SPLIT
    return "the whole root" if split is None else f"split {split!r}"


def relative_path(path: str, root: str) -> str:
    """``path`` below ``root`` with ``/`` separators."""
    return path[len(root) :].lstrip("/").replace(os.sep, "/")


def normalise_root(root: str) -> str:
    if FileSystems.get_scheme(root) is None:  # a local path: absolute, so workers agree on it
        return os.path.abspath(root)
    return root.rstrip("/")
