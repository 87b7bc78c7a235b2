"""The exemplar index the job queries: ``--index`` as given, or built from ``--exemplars`` at start.

Building happens once, when the graph is constructed (before any worker starts),
into ``OUTPUT/_index`` with ``amadapter.retrieval.build_index``; a rerun into
the same output updates that index, reading only pool entries it does not hold
yet. Pool entries that cannot serve as exemplars (unreadable label map, missing
photo, photo of another size) are skipped and logged with the reason. For large
pools, build the index beforehand with ``python -m jobs.build_index`` and pass
``--index``.
"""

from __future__ import annotations

import logging

from apache_beam.io.filesystems import FileSystems

from amadapter.errors import EmptyPoolError, EmptyRootError
from amadapter.retrieval import build_index
from transforms.label_sources import list_label_sources
from transforms.read_label_maps import read_label_record

INDEX_DIR = "_index"
LOG = logging.getLogger("augment")


def prepare_index(
    index: str | None, exemplars: str | None, dataset: str, split: str | None, output: str
) -> str:
    """``index`` when given; else the path of an index of the pool ``exemplars`` (a
    ``dataset`` root, ``split``) built or updated under ``output``. Raises
    ``EmptyPoolError`` when the pool has no usable entry (or no entry at all)."""
    if index is not None:
        return index
    if dataset == "folder":
        raise ValueError(
            "a folder pool pairs photos by file name: build its index with "
            "python -m jobs.build_index --dataset folder, then pass --index"
        )
    path = FileSystems.join(output, INDEX_DIR)
    try:
        sources = list_label_sources(exemplars, dataset, split)
    except EmptyRootError as error:
        raise EmptyPoolError(error.path, f"exemplar pool: {error.reason}") from None
    report = build_index(
        path,
        sources,
        _pool_labels,
        on_skip=lambda source, error: LOG.warning("exemplar pool: skipped %s", error),
    )
    LOG.info(
        "exemplar index %s: %d entries (%d new, %d skipped)",
        path,
        report.total,
        report.added,
        len(report.skipped),
    )
    return path


def _pool_labels(source):
    """A pool entry's train IDs; its photo must exist with the label map's size."""
    return read_label_record(source, photos="require").train_ids
