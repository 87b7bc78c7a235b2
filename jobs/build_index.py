"""Build (or update) the exemplar index of a pool of photos with label maps.

    python -m jobs.build_index --pool /data/cityscapes --dataset cityscapes --split train \\
        --output out/index
    python -m jobs.build_index --pool gs://bucket/bdd100k --dataset bdd100k \\
        --output gs://bucket/index

Every pool entry needs its photo, of its label map's size: Cityscapes
``leftImg8bit``, BDD100K ``images/10k``; in a ``folder`` pool, the JPEG beside
each label map with the same name (``scene.png`` + ``scene.jpg`` or ``.jpeg``).
Entries whose label map or photo is missing or unreadable are skipped, each
printed with its reason. When OUTPUT already holds an index, only entries whose
key it lacks are read and added (``--rebuild`` starts afresh). The augment job
takes the result with ``--index``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Iterable, Iterator

from amadapter.io.errors import InputError
from amadapter.io.label_io import LABEL_FORMATS
from amadapter.retrieval import BuildReport, build_index
from transforms.exemplar_pool import pool_labels, pool_sources
from transforms.label_sources import DATASETS
from transforms.records import LabelSource

PROGRESS_EVERY = 5000


def _progress(sources: list[LabelSource]) -> Iterator[LabelSource]:
    began = time.perf_counter()
    for i, source in enumerate(sources, 1):
        if i % PROGRESS_EVERY == 0:
            rate = i / (time.perf_counter() - began)
            print(f"  {i}/{len(sources)} entries ({rate:.0f}/s)", flush=True)
        yield source


def main(argv: Iterable[str] | None = None) -> BuildReport:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pool", required=True, help="dataset root (local, gs://, s3://)")
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--output", required=True, help="index folder (local, gs://, s3://)")
    parser.add_argument("--split", default=None, help="subfolder, e.g. train (default: train)")
    parser.add_argument(
        "--label-format", default=None, choices=LABEL_FORMATS, help="required for folder pools"
    )
    parser.add_argument("--rebuild", action="store_true", help="replace an existing index")
    parser.add_argument("--workers", type=int, default=4, help="threads reading pool files")
    args = parser.parse_args(None if argv is None else list(argv))

    began = time.perf_counter()
    try:
        sources = pool_sources(args.pool, args.dataset, args.split, args.label_format)
    except InputError as error:
        sys.exit(f"error: {error}")
    print(f"pool {args.pool}: {len(sources)} label maps", flush=True)

    def report_skip(source, error: InputError) -> None:
        print(f"skipped {source.key}: {error}", flush=True)

    try:
        report = build_index(
            args.output,
            _progress(sources),
            pool_labels,
            rebuild=args.rebuild,
            workers=args.workers,
            on_skip=report_skip,
        )
    except InputError as error:  # EmptyPoolError: nothing usable
        sys.exit(f"error: {error}")
    print(
        f"index {args.output}: {report.total} entries ({report.added} added, "
        f"{report.already_indexed} already indexed, {len(report.skipped)} skipped) "
        f"in {time.perf_counter() - began:.1f} s"
    )
    return report


if __name__ == "__main__":
    main()
