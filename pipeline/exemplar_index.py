"""The exemplar index the job queries: ``--index`` as given, or built from ``--exemplars`` at start.

Building happens once, when the graph is constructed (before any worker starts),
into ``OUTPUT/_index`` with ``amadapter.retrieval.build_index``; a rerun into
the same output updates that index, reading only pool entries it does not hold
yet; an index there in a format this code does not read (written by an older
version) is the job's own derived data, so it is rebuilt, with a warning. Pool
entries that cannot serve as exemplars (unreadable label map, missing
photo, photo of another size) are skipped and logged with the reason. For large
pools, build the index beforehand with ``python -m jobs.build_index`` (a Beam job
with ``--runner``) and pass ``--index``. With ``--pool-labels-from`` the pool's photos
are labelled by that segmenter as they are indexed (``storage.unlabelled_pool``); an
index labelled otherwise is rebuilt. Skipped entries are listed, one manifest row each,
in ``OUTPUT/_index/skipped.parquet`` (``storage.exemplar_pool``).
"""

from __future__ import annotations

import logging

from apache_beam.io.filesystems import FileSystems

from amadapter.io.errors import EmptyPoolError, EmptyRootError
from amadapter.retrieval import build_index
from amadapter.retrieval.store import IndexFormatError
from storage.exemplar_pool import exemplar_pool, write_skipped_entries
from storage.unlabelled_pool import PoolLabeller

INDEX_DIR = "_index"
LOG = logging.getLogger("augment")


def prepare_index(
    index: str | None,
    exemplars: str | None,
    dataset: str,
    split: str | None,
    output: str,
    label_format: str | None = None,
    labeller: PoolLabeller | None = None,
) -> str:
    """``index`` when given; else the path of an index of the pool ``exemplars`` (a
    ``dataset`` root, ``split``; a ``folder`` pool needs ``label_format`` and a JPEG
    beside each label map; ``labeller``: a segmenter labelling its photos instead)
    built or updated under ``output``. Raises
    ``EmptyPoolError`` when the pool has no usable entry (or no entry at all)."""
    if index is not None:
        return index
    path = FileSystems.join(output, INDEX_DIR)
    try:
        pool = exemplar_pool(exemplars, dataset, split, label_format, path, labeller)
    except EmptyRootError as error:
        raise EmptyPoolError(error.path, f"exemplar pool: {error.reason}") from None

    skipped: list = []  # this build's (key, error): written even when nothing was usable

    def skip(source, error) -> None:
        LOG.warning("exemplar pool: skipped %s", error)
        skipped.append((source.key, error))

    def build(rebuild: bool):
        skipped.clear()
        return build_index(path, pool.sources, pool.read_label, on_skip=skip, rebuild=rebuild,
                           pool_labels=pool.pool_labels)  # fmt: skip

    try:
        try:
            report = build(rebuild=False)
        except IndexFormatError as error:
            LOG.warning("exemplar index %s: %s; rebuilding the job's own index", path, error)
            report = build(rebuild=True)
    finally:
        write_skipped_entries(path, skipped)
    LOG.info(
        "exemplar index %s: %d entries (%d new, %d skipped)",
        path,
        report.total,
        report.added,
        len(report.skipped),
    )
    return path

