"""The augment job: label maps + exemplar pool -> synthetic (image, label) WebDataset shards.

    python -m jobs.augment --runner=DirectRunner          # the built-in world, bundled model
    python -m jobs.augment --labels /data/cityscapes --dataset cityscapes --split val \\
        --exemplars /data/pool --output out/cs --steps 20 --size 512x1024
    python -m jobs.augment --help                        # every option

The graph is ``pipeline.augment_graph``; options are ``pipeline.options.AugmentOptions``
plus Beam's own (runner, workers, ...). On a local runner the job waits, prints
progress, then a summary (inputs, written, failed, shards, images per second)
and writes a preview (``jobs.preview``). Launched from a Dataflow Flex Template
(the launcher sets ``FLEX_TEMPLATE_PYTHON_PY_FILE``) it only submits the job:
the launcher must not wait for the pipeline to finish.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time

import apache_beam as beam
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter

from jobs.preview import write_preview
from pipeline.augment_graph import MANIFEST, build_augment
from pipeline.dask_select import select_runner
from pipeline.options import AugmentOptions, alias_labels_flag
from transforms.manifest import read_manifest
from transforms.shards import completed_shards
from transforms.synthesis_handler import METRICS_NAMESPACE

TEMPLATE_LAUNCH_ENV = "FLEX_TEMPLATE_PYTHON_PY_FILE"


@dataclasses.dataclass
class AugmentSummary:
    output: str
    inputs: int
    written: int
    failed: int
    shards: int
    synthesized: int  # targets rendered by this run (0 when every shard was already finished)
    model_calls: int
    skipped_shards: int
    seconds: float
    manifest: str
    preview: str | None
    failure_codes: dict

    @property
    def images_per_second(self) -> float:
        return self.synthesized / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        reasons = ", ".join(f"{code}: {n}" for code, n in sorted(self.failure_codes.items()))
        return [
            f"inputs {self.inputs} = written {self.written} + failed {self.failed}"
            + (f" ({reasons})" if reasons else ""),
            f"shards {self.shards} in {self.output} "
            f"({self.skipped_shards} finished earlier, reused)",
            f"rendered {self.synthesized} images in {self.model_calls} model calls, "
            f"{self.seconds:.1f} s, {self.images_per_second:.2f} images/s",
            f"manifest {self.manifest}",
            f"preview  {self.preview}" if self.preview else "preview  (no samples written)",
        ]


def run(argv: list[str] | None = None) -> AugmentSummary | None:
    """Build and run the job; returns the summary, or None when only submitted."""
    augment = AugmentOptions(alias_labels_flag(list(sys.argv[1:] if argv is None else argv)))
    began = time.perf_counter()
    pipeline = beam.Pipeline(runner=select_runner(augment), options=augment)
    build_augment(pipeline, augment)
    result = pipeline.run()
    if TEMPLATE_LAUNCH_ENV in os.environ:
        return None
    result.wait_until_finish()
    seconds = time.perf_counter() - began
    preview = None
    if augment.preview_count > 0:
        written = write_preview(augment.output, augment.preview_count, augment.shard_prefix)
        preview = written[1] if written else None
    return _summary(result, augment, seconds, preview)


def _summary(
    result, augment: AugmentOptions, seconds: float, preview: str | None
) -> AugmentSummary:
    manifest_path = FileSystems.join(augment.output, MANIFEST)
    manifest = read_manifest(manifest_path)
    failed = manifest.filter(pc.equal(manifest.column("status"), "failed"))
    counts = pc.value_counts(failed.column("error_code")).to_pylist()
    metrics = _counters(result)
    return AugmentSummary(
        output=augment.output,
        inputs=manifest.num_rows,
        written=manifest.num_rows - failed.num_rows,
        failed=failed.num_rows,
        shards=len(completed_shards(augment.output, augment.shard_prefix)),
        synthesized=metrics.get("synthesized", 0),
        model_calls=metrics.get("model_calls", 0),
        skipped_shards=metrics.get("skipped_shards", 0),
        seconds=seconds,
        manifest=manifest_path,
        preview=preview,
        failure_codes={c["values"]: c["counts"] for c in counts},
    )


def _counters(result) -> dict[str, int]:
    """This run's counters of namespace ``augment`` (committed values where the runner has them)."""
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    totals: dict[str, int] = {}
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + int(value or 0)
    return totals


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    progress = logging.getLogger("augment")
    progress.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[augment] %(message)s"))
    progress.addHandler(handler)
    progress.propagate = False
    summary = run(argv)
    if summary is None:
        print("[augment] submitted (template launch); see the runner's console for progress")
        return
    print("[augment] done")
    for line in summary.lines():
        print("  " + line)


if __name__ == "__main__":
    main()
