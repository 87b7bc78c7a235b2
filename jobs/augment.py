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

Exit status (``python -m jobs.augment``): 0 when the run finished and at most
``--max-failure-rate`` of its inputs failed; 1 when more failed, or when every
model call failed (the manifest is written first, and the summary names the
most common error); 2 when the options or inputs are wrong before the pipeline
starts (a misspelled option, a root with no label maps, a size off the model's
latent grid: ``pipeline.launch_checks``; an output rendered with another
fingerprint: ``storage.fingerprint``). Out of memory in the first model call
stops the run with an error naming ``--batch-size``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time

from jobs.startup_notices import silence_startup_notices

silence_startup_notices()  # before apache_beam is imported: it logs one notice at import

import apache_beam as beam  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
from apache_beam.io.filesystems import FileSystems  # noqa: E402
from apache_beam.metrics.metric import MetricsFilter  # noqa: E402

from storage.preview import write_preview  # noqa: E402
from jobs.process_exit import exit_without_finalizing  # noqa: E402
from pipeline.augment_graph import MANIFEST, build_augment  # noqa: E402
from pipeline.dask_engine.select import select_runner  # noqa: E402
from pipeline.help_page import help_text  # noqa: E402
from pipeline.launch_checks import LaunchError  # noqa: E402
from pipeline.option_values import OptionValueError  # noqa: E402
from pipeline.options import AugmentOptions, UnknownOptionError, parse_augment_options  # noqa: E402
from storage.fileio import remove_temporaries  # noqa: E402
from storage.fingerprint import FingerprintMismatchError  # noqa: E402
from storage.manifest import read_manifest  # noqa: E402
from storage.shards import completed_shards  # noqa: E402
from transforms.job_metrics import METRICS_NAMESPACE  # noqa: E402
from transforms.synthesis_failures import SYNTHESIS_FAILED, RunStoppingError  # noqa: E402

TEMPLATE_LAUNCH_ENV = "FLEX_TEMPLATE_PYTHON_PY_FILE"
EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_LAUNCH = 0, 1, 2


@dataclasses.dataclass
class AugmentSummary:
    output: str
    inputs: int
    written: int
    failed: int
    filtered: int  # rendered, then dropped by the quality filter (not failures)
    shards: int
    synthesized: int  # targets rendered by this run (0 when every shard was already finished)
    model_calls: int
    skipped_shards: int
    filtered_pixels: int  # pixels the quality filter set to ignore in this run's written samples
    seconds: float
    manifest: str
    preview: str | None
    preview_count: int  # --preview-count: 0 turns the preview off
    failure_codes: dict  # error code -> number of failed inputs
    failure_examples: dict  # error code -> the error text of one of them
    max_failure_rate: float

    @property
    def images_per_second(self) -> float:
        return self.synthesized / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        reasons = ", ".join(f"{code}: {n}" for code, n in sorted(self.failure_codes.items()))
        return [
            f"inputs {self.inputs} = written {self.written} + failed {self.failed} "
            f"+ filtered {self.filtered}" + (f" ({reasons})" if reasons else ""),
            f"shards {self.shards} in {self.output} "
            f"({self.skipped_shards} finished earlier, reused)",
            f"rendered {self.synthesized} images in {self.model_calls} model calls, "
            f"{self.seconds:.1f} s, {self.images_per_second:.2f} images/s",
            *(
                [f"quality filter: {self.filtered_pixels} pixels set to ignore (this run)"]
                if self.filtered_pixels or self.filtered
                else []
            ),
            f"manifest {self.manifest}",
            f"preview  {self._preview_line()}",
        ]

    def _preview_line(self) -> str:
        if self.preview:
            return self.preview
        return "(off: --preview-count 0)" if self.preview_count == 0 else "(no samples written)"

    @property
    def failure(self) -> str | None:
        """Why the run counts as failed (exit status 1), naming the most common error; None
        when it does not: at most ``max_failure_rate`` of the inputs failed and at least
        one model call succeeded (or none was needed)."""
        if self.inputs and self.failed / self.inputs > self.max_failure_rate:
            reason = (
                f"{self.failed} of {self.inputs} inputs failed ({self.failed / self.inputs:.0%}, "
                f"more than --max-failure-rate {self.max_failure_rate:g})"
            )
        elif self.failure_codes.get(SYNTHESIS_FAILED) and self.synthesized == 0:
            reason = "every model call failed"
        else:
            return None
        code = max(sorted(self.failure_codes), key=self.failure_codes.get)
        return (
            f"{reason}; most common error: {code} ({self.failure_codes[code]} inputs), "
            f"e.g. {self.failure_examples[code]}"
        )


def run(argv: list[str] | None = None) -> AugmentSummary | None:
    """Build and run the job; returns the summary, or None when only submitted."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(help_text())
        raise SystemExit(EXIT_OK)
    augment = parse_augment_options(argv)
    began = time.perf_counter()
    pipeline = beam.Pipeline(runner=select_runner(augment), options=augment)
    build_augment(pipeline, augment)
    result = pipeline.run()
    if TEMPLATE_LAUNCH_ENV in os.environ:
        return None
    result.wait_until_finish()
    seconds = time.perf_counter() - began
    for leftover in remove_temporaries(augment.output):  # left by writers killed earlier
        logging.getLogger("augment").info("removed leftover temporary file %s", leftover)
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
    filtered = pc.sum(pc.equal(manifest.column("status"), "filtered")).as_py() or 0
    counts = pc.value_counts(failed.column("error_code")).to_pylist()
    codes, errors = failed.column("error_code"), failed.column("error")
    examples = {c["values"]: errors[pc.index(codes, c["values"]).as_py()].as_py() for c in counts}
    metrics = _counters(result)
    return AugmentSummary(
        output=augment.output,
        inputs=manifest.num_rows,
        written=manifest.num_rows - failed.num_rows - filtered,
        failed=failed.num_rows,
        filtered=filtered,
        shards=len(completed_shards(augment.output, augment.shard_prefix)),
        synthesized=metrics.get("synthesized", 0),
        model_calls=metrics.get("model_calls", 0),
        skipped_shards=metrics.get("skipped_shards", 0),
        filtered_pixels=metrics.get("filtered_pixels", 0),
        seconds=seconds,
        manifest=manifest_path,
        preview=preview,
        preview_count=augment.preview_count,
        failure_codes={c["values"]: c["counts"] for c in counts},
        failure_examples=examples,
        max_failure_rate=augment.max_failure_rate,
    )


def _counters(result) -> dict[str, int]:
    """This run's counters of namespace ``augment`` (committed values where the runner has them)."""
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    totals: dict[str, int] = {}
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + int(value or 0)
    return totals


def main(argv: list[str] | None = None) -> int:
    """Run the job and print its summary; returns the exit status (module docstring)."""
    logging.basicConfig(level=logging.WARNING)
    progress = logging.getLogger("augment")
    progress.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[augment] %(message)s"))
    progress.addHandler(handler)
    progress.propagate = False
    try:
        summary = run(argv)
    except (UnknownOptionError, OptionValueError, LaunchError, FingerprintMismatchError) as error:
        print(f"[augment] error: {error}", file=sys.stderr)
        return EXIT_BAD_LAUNCH
    except RunStoppingError as error:  # raised on a worker; runners that keep the type
        print(f"[augment] FAILED: {error}", file=sys.stderr)
        return EXIT_RUN_FAILED
    if summary is None:
        print("[augment] submitted (template launch); see the runner's console for progress")
        return EXIT_OK
    print("[augment] done")
    for line in summary.lines():
        print("  " + line)
    if summary.failure:
        print(f"[augment] FAILED: {summary.failure}", file=sys.stderr)
        return EXIT_RUN_FAILED
    return EXIT_OK


if __name__ == "__main__":
    exit_without_finalizing(main())
