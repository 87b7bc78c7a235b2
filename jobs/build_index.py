"""Build (or update) the exemplar index of a pool of photos with label maps (or of photos
that a segmenter labels).

    python -m jobs.build_index --pool /data/cityscapes --dataset cityscapes --split train \\
        --output out/index
    python -m jobs.build_index --pool gs://bucket/bdd100k --dataset bdd100k \\
        --output gs://bucket/index --runner=DaskRunner --dask_client_address HOST:8786
    python -m jobs.build_index --pool /data/dashcam --dataset folder \\
        --pool-labels-from out/segmenter --output out/index   # photos without labels

Every pool entry needs its photo, of its label map's size: Cityscapes
``leftImg8bit``, BDD100K ``images/10k``; in a ``folder`` pool, the JPEG beside
each label map with the same name (``scene.png`` + ``scene.jpg`` or ``.jpeg``).
Entries whose label map or photo is missing or unreadable are skipped, each
printed with its reason and listed as manifest rows in ``OUTPUT/skipped.parquet``.
With ``--pool-labels-from DIR`` the pool is its photos alone (label maps there are
ignored), each labelled once by the segmenter in DIR as it is indexed; the predicted
maps are kept under OUTPUT (``storage.unlabelled_pool``) and the segmenter's sha256 in
its ``index.json``. When OUTPUT already holds an index, only entries whose
key it lacks are read and added (``--rebuild`` starts afresh). The augment job
takes the result with ``--index``.

Without ``--runner`` the build runs here, ``--workers`` threads reading files
(about 125 full-resolution Cityscapes entries a second on one process). With
``--runner`` (the augment job's runners: DirectRunner, DaskRunner, DataflowRunner,
...; Beam's own options such as ``--dask_client_address`` pass through) it is a
Beam job (``pipeline.index_graph``) that writes the same index; this process lists
the pool, then commits the parts the workers wrote.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Callable, Iterable, Iterator

from jobs.startup_notices import silence_startup_notices

silence_startup_notices()  # before apache_beam is imported: it logs one notice at import

import apache_beam as beam  # noqa: E402
from apache_beam.io.filesystems import FileSystems  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from amadapter.io.errors import InputError, input_error  # noqa: E402
from amadapter.io.label_io import LABEL_FORMATS  # noqa: E402
from amadapter.retrieval import BuildReport, build_index  # noqa: E402
from amadapter.retrieval.build import commit_build, indexed_keys, new_sources  # noqa: E402
from amadapter.models.segmentation_models import SegmenterFormatError  # noqa: E402
from amadapter.retrieval.store import IndexFormatError, IndexStore  # noqa: E402
from jobs.process_exit import exit_without_finalizing  # noqa: E402
from pipeline.dask_engine.select import select_runner  # noqa: E402
from pipeline.index_graph import add_index_build, write_todo  # noqa: E402
from pipeline.options import unknown_arguments  # noqa: E402
from storage.exemplar_pool import ExemplarPool, exemplar_pool, write_skipped_entries  # noqa: E402
from storage.fileio import list_files, read_bytes  # noqa: E402
from storage.unlabelled_pool import PoolLabeller  # noqa: E402
from transforms.index_parts import index_buckets  # noqa: E402
from storage.dataset_layouts import DATASETS  # noqa: E402
from storage.records import LabelSource  # noqa: E402

PROGRESS_EVERY = 5000


def _progress(sources: list[LabelSource]) -> Iterator[LabelSource]:
    began = time.perf_counter()
    for i, source in enumerate(sources, 1):
        if i % PROGRESS_EVERY == 0:
            rate = i / (time.perf_counter() - began)
            print(f"  {i}/{len(sources)} entries ({rate:.0f}/s)", flush=True)
        yield source


def beam_build(
    output: str, pool: ExemplarPool, rebuild: bool, options: PipelineOptions,
    on_skip: Callable[[str, InputError], None] = lambda key, error: None,
) -> BuildReport:
    """The build as a Beam job on the runner of ``options``; the same result as
    ``build_index(output, pool.sources, pool.read_label, rebuild=rebuild, ...)``.
    ``on_skip(key, error)`` is called for each skipped entry once the workers are done,
    before the commit (which raises ``EmptyPoolError`` when nothing was usable)."""
    store, report = IndexStore(output), BuildReport(output)
    if not rebuild:
        store.check_pool_labels(pool.pool_labels)
    todo = list(new_sources(pool.sources, set() if rebuild else indexed_keys(store), report))
    parts = []
    if todo:
        run = uuid.uuid4().hex[:12]
        work_dir = FileSystems.join(output, f"_build-{run}")
        try:
            pipeline = beam.Pipeline(runner=select_runner(options), options=options)
            buckets = index_buckets(len(todo))
            add_index_build(pipeline, write_todo(work_dir, todo), output, work_dir, run, buckets,
                            pool.read_label)  # fmt: skip
            pipeline.run().wait_until_finish()
            for path in list_files(f"{work_dir}/bucket-*.json"):
                written = json.loads(read_bytes(path))
                parts += written["parts"]
                for s in written["skipped"]:
                    report.skipped.append((s["key"], input_error(s["code"], s["path"], s["reason"])))
                    on_skip(*report.skipped[-1])
        finally:  # parts of a failed run stay unlisted; the next commit removes them
            FileSystems.delete(list_files(f"{work_dir}/*"))
            if FileSystems.exists(work_dir):  # a local folder (a bucket has no empty ones)
                FileSystems.delete([work_dir])
        report.added = sum(part["rows"] for part in parts)
    return commit_build(store, parts, report, rebuild, pool.pool_labels)


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
    parser.add_argument(
        "--pool-labels-from", default=None, metavar="DIR",
        help="a segmenter directory that labels the pool's photos (their label maps, if any, are ignored)",
    )  # fmt: skip
    parser.add_argument("--rebuild", action="store_true", help="replace an existing index")
    parser.add_argument("--workers", type=int, default=4, help="threads reading pool files")
    parser.add_argument(
        "--runner", default=None, help="build as a Beam job on this runner (module docstring)"
    )
    args, beam_args = parser.parse_known_args(None if argv is None else list(argv))
    unknown = unknown_arguments(beam_args)
    if unknown or (beam_args and args.runner is None):
        parser.error("; ".join(unknown) or f"Beam options need --runner: {' '.join(beam_args)}")

    began = time.perf_counter()
    try:
        labeller = PoolLabeller.of(args.pool_labels_from) if args.pool_labels_from else None
        pool = exemplar_pool(args.pool, args.dataset, args.split, args.label_format, args.output, labeller)
    except (InputError, SegmenterFormatError) as error:
        sys.exit(f"error: {error}")
    what = "photos to label" if args.pool_labels_from else "label maps"
    print(f"pool {args.pool}: {len(pool.sources)} {what}", flush=True)
    skipped: list[tuple[str, InputError]] = []

    def report_skip(key: str, error: InputError) -> None:
        print(f"skipped {key}: {error}", flush=True)
        skipped.append((key, error))

    try:
        if args.runner is None:
            report = build_index(
                args.output,
                _progress(pool.sources),
                pool.read_label,
                rebuild=args.rebuild,
                workers=args.workers,
                on_skip=lambda source, error: report_skip(source.key, error),
                pool_labels=pool.pool_labels,
            )
        else:
            options = PipelineOptions([f"--runner={args.runner}", *beam_args])
            report = beam_build(args.output, pool, args.rebuild, options, report_skip)
    except (InputError, IndexFormatError) as error:  # EmptyPoolError: nothing usable
        sys.exit(f"error: {error}")
    finally:
        write_skipped_entries(args.output, skipped)
    print(
        f"index {args.output}: {report.total} entries ({report.added} added, "
        f"{report.already_indexed} already indexed, {len(report.skipped)} skipped) "
        f"in {time.perf_counter() - began:.1f} s"
    )
    return report


if __name__ == "__main__":
    main()
    exit_without_finalizing(0)
