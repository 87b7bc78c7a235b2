"""The default augment job on a real dask.distributed cluster: `dask scheduler` and two
`dask worker` processes on 127.0.0.1 (the README's "Dask cluster" commands), the job
launched as `python -m jobs.augment --runner=DaskRunner --dask_client_address ...`.

The shards and the manifest must equal a DirectRunner run's byte for byte (same options,
same output path: sample provenance holds the input paths), the shards must be rendered
by both workers, and a worker SIGKILLed mid-run must not change the result.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import GlobalWindows

from amadapter.world.export import export_world
from jobs.augment import run
from jobs.build_index import main as build_index_job
from pipeline.dask_engine.runner import DaskRunner, check_beam_version
from pipeline.launch_checks import LaunchError
from tests.conftest import REPO
from tests.test_retrieval_index import write_pool
from tests.test_pool_labels import same_predicted_index
from tests.test_quality_filter import save_small_segmenter
from tests.test_retrieval_job import index_rows

WORKERS = ("w1", "w2")
# The default job (built-in world, bundled demo model), cheap: 16 inputs in 8 shards.
JOB = ["--steps", "1", "--shard-size", "2", "--preview-count", "0"]
SHARDS = 8
LIFETIME = "10 minutes"  # every cluster process ends itself by then, whatever the test does
RENDERED = re.compile(r"^\[augment\] (\S+) \(pid (\d+)\): shard (\d+), batch \d+/\d+: rendered")
WRITTEN = re.compile(r"^\[augment\] (\S+) \(pid (\d+)\): shard (\d+) written")


def _dask(*args: str, log: Path) -> subprocess.Popen:
    """A `dask` CLI process with the checkout on its path (workers unpickle its modules)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [str(Path(sys.executable).with_name("dask")), *args]
    return subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {seconds} s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """{"address", "workers": name -> Popen} of a scheduler and two one-thread workers
    (no nanny: the `dask worker` process is the worker, so its pid is the one to kill)."""
    root = tmp_path_factory.mktemp("cluster")
    scheduler_file = root / "scheduler.json"
    processes = []
    try:
        processes.append(
            _dask(
                "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                "--scheduler-file", str(scheduler_file), "--idle-timeout", LIFETIME,
                log=root / "scheduler.log",
            )
        )  # fmt: skip
        _wait_for(scheduler_file.exists, 60, "scheduler file")
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:"), address
        workers = {}
        for name in WORKERS:
            workers[name] = _dask(
                "worker", "--scheduler-file", str(scheduler_file), "--host", "127.0.0.1",
                "--nthreads", "1", "--nworkers", "1", "--no-nanny", "--no-dashboard",
                "--name", name, "--lifetime", LIFETIME, log=root / f"{name}.log",
            )  # fmt: skip
            processes.append(workers[name])
        registered = lambda: all(  # noqa: E731
            "Registered to" in (root / f"{name}.log").read_text() for name in WORKERS
        )
        _wait_for(registered, 60, "registered workers")
        yield {"address": address.removeprefix("tcp://"), "workers": workers}
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(output path every run writes to, the DirectRunner run's files moved beside it)."""
    base = tmp_path_factory.mktemp("runs")
    output = base / "out"
    run(["--runner=DirectRunner", "--output", str(output)] + JOB)
    reference = base / "direct"
    output.rename(reference)
    yield output, reference


def _launch(cluster, output: Path, runner: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "jobs.augment", f"--runner={runner}"]
    command += ["--dask_client_address", cluster["address"], "--output", str(output)] + JOB
    return subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _results(output: Path) -> dict[str, bytes]:
    """The files two equal runs must share byte for byte: every tar and the manifest."""
    files = sorted(output.glob("aug-*.tar")) + [output / "manifest.parquet"]
    return {f.name: f.read_bytes() for f in files}


def test_dask_run_equals_direct_runner_and_spreads_over_both_workers(cluster, runs):
    output, reference = runs
    job = _launch(cluster, output, "DaskRunner")
    log, _ = job.communicate(timeout=300)
    try:
        assert job.returncode == 0, log[-4000:]
        expected = _results(reference)
        assert len(expected) == SHARDS + 1
        assert _results(output) == expected
        assert "inputs 16 = written 16 + failed 0" in log  # the summary
        assert f"rendered 16 images in {SHARDS} model calls" in log  # metrics came back
        rendered, written = {}, {}  # shard -> (worker name, pid), from the workers' log lines
        for line in log.splitlines():
            for found, pattern in ((rendered, RENDERED), (written, WRITTEN)):
                if match := pattern.match(line):
                    found[int(match[3])] = (match[1], int(match[2]))
        assert sorted(rendered) == list(range(SHARDS)), log[-4000:]
        pids = {name: process.pid for name, process in cluster["workers"].items()}
        assert {worker for worker, _ in rendered.values()} == set(WORKERS), rendered
        assert all(pids[worker] == pid for worker, pid in rendered.values()), (rendered, pids)
        assert written == rendered  # fused: a shard is written where it was rendered
    finally:
        shutil.rmtree(output)


def test_runner_keeps_outputs_apart_and_finish_bundle_output(cluster, tmp_path):
    """What Beam 2.77's own DaskRunner gets wrong, on a pipeline small enough to read:
    tagged outputs mixed, output of finish_bundle dropped, sinks other than the last
    transform never run. Each result is written by a worker to a file."""

    class SplitByParity(beam.DoFn):
        def process(self, n):
            yield n if n % 2 == 0 else beam.pvalue.TaggedOutput("odd", n)

    class CountInFinishBundle(beam.DoFn):
        def start_bundle(self):
            self.seen = 0

        def process(self, n):
            self.seen += 1

        def finish_bundle(self):
            yield GlobalWindows.windowed_value(self.seen)

    def write_to(name):
        path = str(tmp_path / f"{name}.json")
        return beam.combiners.ToList() | f"Write{name}" >> beam.Map(
            lambda values, path: Path(path).write_text(json.dumps(sorted(values))), path
        )

    options = PipelineOptions(["--dask_client_address", cluster["address"]])
    pipeline = beam.Pipeline(runner=DaskRunner(), options=options)
    numbers = pipeline | beam.Create(range(10)) | beam.Reshuffle()
    split = numbers | beam.ParDo(SplitByParity()).with_outputs("odd", main="even")
    total = beam.pvalue.AsSingleton(numbers | beam.CombineGlobally(sum))
    _ = split.even | "Even" >> write_to("even")
    _ = split.odd | beam.Map(lambda n, total: n + total, total) | "Odd" >> write_to("odd")
    _ = numbers | beam.ParDo(CountInFinishBundle()) | "Counts" >> write_to("counts")
    pipeline.run().wait_until_finish()
    read = lambda name: json.loads((tmp_path / f"{name}.json").read_text())  # noqa: E731
    assert read("even") == [0, 2, 4, 6, 8]
    assert read("odd") == [46, 48, 50, 52, 54]  # each odd number plus the side input, 45
    assert sum(read("counts")) == 10 and len(read("counts")) > 1  # Reshuffle: several bundles


def test_index_build_on_dask_writes_the_local_build_index(cluster, tmp_path):
    write_pool(tmp_path / "pool")
    argv = ["--pool", str(tmp_path / "pool"), "--dataset", "cityscapes", "--output"]
    build_index_job(argv + [str(tmp_path / "local")])
    report = build_index_job(argv + [str(tmp_path / "dask"), "--runner=DaskRunner",
                                     "--dask_client_address", cluster["address"]])  # fmt: skip
    assert (report.added, report.total, report.skipped) == (5, 5, [])
    assert index_rows(tmp_path / "dask") == index_rows(tmp_path / "local")


def test_index_build_of_photos_labelled_by_a_segmenter_on_dask(cluster, tmp_path):
    export_world(tmp_path / "pool", 5, "val", 16, 32, domain="night")
    save_small_segmenter(tmp_path / "segmenter", seed=1)
    argv = ["--pool", str(tmp_path / "pool"), "--dataset", "cityscapes", "--split", "val",
            "--pool-labels-from", str(tmp_path / "segmenter"), "--output"]  # fmt: skip
    build_index_job(argv + [str(tmp_path / "local")])
    report = build_index_job(argv + [str(tmp_path / "dask"), "--runner=DaskRunner",
                                     "--dask_client_address", cluster["address"]])  # fmt: skip
    assert (report.added, report.total, report.skipped) == (5, 5, [])
    assert same_predicted_index(tmp_path / "dask", tmp_path / "local")


def test_worker_killed_mid_run_changes_nothing(cluster, runs):
    output, reference = runs
    job = _launch(cluster, output, "dask")
    finished = lambda: list(output.glob("aug-*.stats.json"))  # noqa: E731
    _wait_for(lambda: finished() or job.poll() is not None, 240, "finished shard")
    at_kill = len(finished())
    assert job.poll() is None and at_kill < SHARDS, "the job ended before the kill"
    victim = cluster["workers"]["w1"]
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    log, _ = job.communicate(timeout=300)
    ending = log.strip().splitlines()[-1] if log.strip() else ""
    print(f"killed w1 with {at_kill} of {SHARDS} shards finished; exit {job.returncode}: {ending}")
    if job.returncode != 0:  # the documented fallback: a rerun into the same output finishes
        rerun = _launch(cluster, output, "dask")
        log, _ = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, log[-4000:]
    assert _results(output) == _results(reference)
    assert "inputs 16 = written 16 + failed 0" in log



def _run_on(runner, cluster, build) -> None:
    pipeline = beam.Pipeline(runner=runner, options=PipelineOptions(["--dask_client_address", cluster["address"]]))
    build(pipeline)
    result = pipeline.run()
    result.wait_until_finish()
    result.client.close()  # Beam's own result leaves its client open (ours closed it already)


def test_the_beam_bugs_the_translation_works_around_are_still_in_beams_own_runner(cluster, tmp_path):
    """One minimal pipeline per Beam 2.77 bug listed in pipeline/dask_engine/translation.py
    (all but fusion, see the end), on Beam's OWN DaskRunner, asserting the wrong result. When
    a Beam upgrade fixes one, its assertion fails here: drop that workaround."""
    from apache_beam.runners.dask.dask_runner import DaskRunner as BeamsDaskRunner

    # Defined here, not at module level: the workers unpickle them by value.
    class SplitByParity(beam.DoFn):
        def process(self, n):
            yield n if n % 2 == 0 else beam.pvalue.TaggedOutput("odd", n)

    class EmitInFinishBundle(beam.DoFn):
        def process(self, n):
            return []

        def finish_bundle(self):
            yield GlobalWindows.windowed_value("finished")

    def sink(name):
        path = str(tmp_path / f"{name}.json")
        return beam.combiners.ToList() | f"Write{name}" >> beam.Map(
            lambda values, path: Path(path).write_text(json.dumps(sorted(values))), path
        )

    def read(name):
        path = tmp_path / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def tagged(pipeline):  # the main output of a two-output ParDo
        _ = (pipeline | beam.Create(range(4)) | beam.ParDo(SplitByParity()).with_outputs("odd", main="even")).even | sink("even")

    _run_on(BeamsDaskRunner(), cluster, tagged)
    assert read("even") == [0, 1, 2, 3]  # bug: the odd numbers are in it too (right: [0, 2])

    def finish_bundle(pipeline):
        _ = pipeline | beam.Create(range(4)) | beam.ParDo(EmitInFinishBundle()) | sink("finished")

    _run_on(BeamsDaskRunner(), cluster, finish_bundle)
    assert read("finished") == []  # bug: what finish_bundle emits is lost (right: ["finished"])

    def two_sinks(pipeline):
        numbers = pipeline | beam.Create(range(3))
        _ = numbers | "First" >> sink("first")
        _ = numbers | beam.Map(lambda n: n * 10) | "Last" >> sink("last")

    _run_on(BeamsDaskRunner(), cluster, two_sinks)
    assert read("last") == [0, 10, 20] and read("first") is None  # bug: only the last sink ran

    marks = tmp_path / "marks"
    marks.mkdir()

    def mark(tag):  # one empty file per call, from any worker
        Path(marks, f"{tag}-{os.getpid()}-{time.monotonic_ns()}").touch()

    def marked(tag):
        return len(list(marks.glob(f"{tag}-*")))

    class MarksLifecycle(beam.DoFn):
        def __init__(self, tag):
            self._tag = tag

        def setup(self):
            mark(self._tag + "_setup")

        def start_bundle(self):
            mark(self._tag + "_bundle")

        def process(self, n):
            yield n

    def reshuffle(pipeline):  # 20 elements: one Create partition
        _ = pipeline | beam.Create(range(20)) | beam.Reshuffle() | beam.ParDo(MarksLifecycle("spread"))

    _run_on(BeamsDaskRunner(), cluster, reshuffle)
    assert marked("spread_bundle") == 1  # bug: Reshuffle spreads nothing (ours: 4 per worker thread)

    def partitions(pipeline):  # 600 elements: Beam's Create makes 5 partitions of <= 128
        _ = pipeline | beam.Create(range(600)) | beam.ParDo(MarksLifecycle("life"))

    _run_on(BeamsDaskRunner(), cluster, partitions)
    assert marked("life_setup") == marked("life_bundle") == 5  # bug: a setup (a model load) per partition

    def side_input(pipeline):
        side = pipeline | "Side" >> beam.Create([1]) | "SideWork" >> beam.Map(lambda n: (mark("side"), n)[1])
        numbers = pipeline | "Numbers" >> beam.Create(range(600))
        _ = (numbers | "AddSide" >> beam.Map(lambda n, s: n + s, beam.pvalue.AsSingleton(side))
             | beam.combiners.Count.Globally())  # fmt: skip

    _run_on(BeamsDaskRunner(), cluster, side_input)
    assert marked("side") == 5  # bug: the side input's upstream runs again for each of 5 partitions
    # (Fusion copying a step into both of its consumers is dask.bag's, and shows only when both
    # are computed, which Beam's runner never does: only its last sink runs, as above.)

    # The same three on this project's runner: what the translation makes of them.
    for path in marks.iterdir():
        path.unlink()
    for build in (reshuffle, partitions, side_input):
        _run_on(DaskRunner(), cluster, build)
    assert marked("spread_bundle") > 1  # spread over partitions
    assert marked("life_setup") <= len(WORKERS) < marked("life_bundle")  # one setup per worker process
    assert marked("side") == 1  # the side input computed once


def test_a_run_tears_down_its_dofns_on_the_workers_when_it_ends(cluster, tmp_path):
    """Set-up DoFns (the model, in the job) are released when the run ends, not kept until
    the next run's first bundle."""

    class MarksTeardown(beam.DoFn):  # writes a file named for its process when torn down
        def __init__(self, folder: str):
            self._folder = folder

        def process(self, n):
            yield n

        def teardown(self):
            Path(self._folder, f"teardown-{os.getpid()}").write_text("done")

    def marked(pipeline):
        _ = pipeline | beam.Create(range(8)) | beam.Reshuffle() | beam.ParDo(MarksTeardown(str(tmp_path)))

    _run_on(DaskRunner(), cluster, marked)
    assert list(tmp_path.glob("teardown-*"))  # every worker that set one up tore it down


def test_another_beam_version_is_refused_at_launch():
    check_beam_version(beam.__version__)  # the pinned one
    with pytest.raises(LaunchError, match=r"written against Beam 2\.77\.x internals and this is Beam 2\.78\.0"):
        check_beam_version("2.78.0")
