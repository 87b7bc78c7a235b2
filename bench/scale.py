"""Scale of the augment graph: nothing may grow with the input count on one worker.

    python -m bench.scale [--quick]      # 10^5 and 10^6 keys (quick: 10^4 and 10^5)

The job's own graph up to synthesis (``pipeline.augment_graph.plan_augment``:
read the listing, expand, assign shards, skip finished, retrieve, plan and load
each shard) and then, instead of the model, each shard written with its targets
as ``not_rendered`` rows (tar, manifest part and stats, by the job's writer),
then ``manifest.parquet`` assembled by the job's own step. DirectRunner, one
process per size, no model call.

Inputs: ``keys / SAMPLES`` label maps (32x64, Cityscapes layout, test split),
hard links to ``DISTINCT`` world layouts so that 10^5 files cost no disk; each
gives ``SAMPLES`` keys. The pool is 48 world frames with a prebuilt index.

Measured per size: wall seconds of the run, peak RSS (VmHWM of the child), and
the pickled size of (a) every side input (the whole PCollection a worker
receives: one element for ``AsSingleton``, the sum for ``AsDict``/``AsList``)
and (b) every single element after a ``GroupByKey`` or combine (the key with
all its values): a measuring branch is attached to each such PCollection of the
built graph before it runs. The last line is one JSON object with ``keys``,
``seconds``, ``peak_rss_mb``, ``max_side_input_mb`` and ``max_group_element_mb``
per size (suffixes ``_100k``, ``_1m``; quick ``_10k``, ``_100k``), the label
of the largest of each, and every measured point (``measured_mb``).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq

from amadapter.world.export import export_world
from pipeline.augment_graph import DEFAULT_MODEL_DIR, MANIFEST, plan_augment
from pipeline.default_world import POOL_SPLIT
from pipeline.exemplar_index import prepare_index
from pipeline.options import AugmentOptions, alias_labels_flag
from transforms.assemble_manifest import AssembleManifest
from storage.records import FailedInput
from storage.shards import write_shard
from bench.memory import peak_rss_mb

SAMPLES = 10  # keys per label map
DISTINCT = 64  # distinct label maps behind the hard links
SIZE = (32, 64)
SHARD_SIZE = 64
SIZES = {"100k": 100_000, "1m": 1_000_000}
QUICK_SIZES = {"10k": 10_000, "100k": 100_000}


def export_inputs(root: Path, keys: int) -> tuple[Path, str]:
    """``keys / SAMPLES`` label maps under ``root/labels`` and a pool index; (labels, index)."""
    distinct = root / "distinct"
    stems = export_world(distinct, DISTINCT, "test", *SIZE)
    source = distinct / "gtFine" / "test" / "world"
    city = root / "labels" / "gtFine" / "test" / "bench"
    city.mkdir(parents=True)
    for i in range(keys // SAMPLES):
        target = city / f"bench_{i:07d}_000019_gtFine_labelTrainIds.png"
        os.link(source / f"{stems[i % DISTINCT]}_gtFine_labelTrainIds.png", target)
    export_world(root / "pool", 48, POOL_SPLIT, *SIZE)
    index = prepare_index(None, str(root / "pool"), "cityscapes", POOL_SPLIT, str(root / "pool"))
    return root / "labels", index


class _WriteUnrendered(beam.DoFn):
    """A shard's work written without a model: every target a ``not_rendered`` row."""

    def __init__(self, output: str, prefix: str):
        self._output, self._prefix = output, prefix

    def process(self, work):
        unrendered = [
            FailedInput(r.target.key, r.target.source, "not_rendered", "bench.scale: no model")
            for r in work.requests
        ]
        write_shard(self._output, self._prefix, work.shard, [], list(work.failures) + unrendered)
        yield work.shard


def measured_points(pipeline: beam.Pipeline) -> list[tuple[str, str, beam.PCollection]]:
    """(kind, label, PCollection) for every side input and every GroupByKey/combine output."""
    points, seen = [], set()

    def visit(node):
        for side in node.side_inputs:
            if id(side.pvalue) not in seen:
                seen.add(id(side.pvalue))
                points.append(("side", f"{node.full_label} <- {type(side).__name__}", side.pvalue))
        combine = isinstance(node.transform, (beam.CombineGlobally, beam.CombinePerKey))
        if combine or isinstance(node.transform, beam.GroupByKey):
            for output in node.outputs.values():
                points.append(("group", node.full_label, output))
            if combine:  # its inner GroupByKey carries partial accumulators, lifted by runners
                return
        for part in node.parts:
            visit(part)

    visit(pipeline.transforms_stack[0])
    return points


def pickled_size(element, kind: str) -> int:
    if kind == "group" and isinstance(element, tuple) and len(element) == 2:
        key, values = element
        if not isinstance(values, (bytes, str)) and hasattr(values, "__iter__"):
            element = (key, list(values))
    return len(pickle.dumps(element, protocol=pickle.HIGHEST_PROTOCOL))


def attach_measures(points, folder: str) -> None:
    for number, (kind, label, pcoll) in enumerate(points):
        sizes = pcoll | f"MeasureSize{number}" >> beam.Map(pickled_size, kind)
        # A side input reaches a worker whole: its size is the sum; a group, the largest.
        total = sum if kind == "side" else _largest
        (
            sizes
            | f"MeasureTotal{number}" >> beam.CombineGlobally(total)
            | f"MeasureWrite{number}"
            >> beam.Map(_write_measure, os.path.join(folder, f"{number}.json"), kind, label)
        )


def _largest(sizes) -> int:
    return max(sizes, default=0)


def _write_measure(size: int, path: str, kind: str, label: str) -> None:
    Path(path).write_text(json.dumps({"kind": kind, "label": label, "bytes": int(size)}))


def child(keys: int, work_dir: Path) -> dict:
    """One size, in this (fresh) process."""
    labels, index = export_inputs(work_dir, keys)
    output, measures = work_dir / "out", work_dir / "measures"
    measures.mkdir()
    argv = alias_labels_flag(
        [
            "--runner=DirectRunner", "--labels", str(labels), "--dataset", "cityscapes",
            "--split", "test", "--index", index, "--model", DEFAULT_MODEL_DIR,
            "--samples-per-label", str(SAMPLES), "--shard-size", str(SHARD_SIZE),
            "--output", str(output),
        ]  # fmt: skip
    )
    options = AugmentOptions(argv)
    began = time.perf_counter()
    pipeline = beam.Pipeline(options=options)
    plan = plan_augment(pipeline, options)
    written = plan.work | "WriteUnrendered" >> beam.ParDo(
        _WriteUnrendered(str(output), options.shard_prefix)
    )
    assemble = AssembleManifest(str(output), options.shard_prefix, str(output / MANIFEST))
    (written, plan.reused) | "ShardsDone" >> beam.Flatten() | "AssembleManifest" >> assemble
    attach_measures(measured_points(pipeline), str(measures))
    pipeline.run().wait_until_finish()
    seconds = time.perf_counter() - began
    rows = pq.read_metadata(str(output / MANIFEST)).num_rows
    found = [json.loads(p.read_text()) for p in measures.glob("*.json")]
    side = max((m for m in found if m["kind"] == "side"), key=lambda m: m["bytes"])
    group = max((m for m in found if m["kind"] == "group"), key=lambda m: m["bytes"])
    return {
        "keys": keys,
        "manifest_rows": rows,
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "max_side_input_mb": round(side["bytes"] / 2**20, 4),
        "max_side_input": side["label"],
        "max_group_element_mb": round(group["bytes"] / 2**20, 4),
        "max_group_element": group["label"],
        "measured_mb": {m["label"]: round(m["bytes"] / 2**20, 4) for m in found},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10^4 and 10^5 keys")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        work_dir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
        try:
            print(json.dumps(child(args.child, work_dir)))
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
        return {}
    result = {}
    for suffix, keys in (QUICK_SIZES if args.quick else SIZES).items():
        out = subprocess.run(
            [sys.executable, "-m", "bench.scale", "--child", str(keys)],
            check=True,
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        ).stdout
        figures = json.loads(out.strip().splitlines()[-1])
        print(f"{keys} keys: {figures}", flush=True)
        result.update({f"{name}_{suffix}": value for name, value in figures.items()})
    first, second = (QUICK_SIZES if args.quick else SIZES).keys()
    for name in ("max_side_input_mb", "max_group_element_mb", "peak_rss_mb"):
        result[f"ratio_{name}_{second}_vs_{first}"] = round(
            result[f"{name}_{second}"] / result[f"{name}_{first}"], 4
        )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
