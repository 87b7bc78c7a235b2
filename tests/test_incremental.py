"""Scheduled runs into one output: a grown input set, another fingerprint, --overwrite,
removed keys. Real DirectRunner jobs with a tiny checkpoint, real tars and manifests."""

import json
import os
import shutil
from pathlib import Path

import apache_beam as beam
import pytest

from amadapter.pipelines.exemplar_start import DEFAULT_EXEMPLAR_PATH, EXEMPLAR_PATHS
from amadapter.pipelines.model_factory import build_pipeline
from amadapter.world.export import export_world
from jobs.augment import EXIT_BAD_LAUNCH, main, run
from pipeline.augment_graph import build_augment
from pipeline.exemplar_index import prepare_index
from pipeline.options import AugmentOptions, alias_labels_flag
from storage.fingerprint import FingerprintMismatchError
from storage.manifest import read_manifest

FIRST, GROWN = 6, 10  # label maps before and after the input grows


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A label root of FIRST maps, a pool index, a tiny model; a first run into ``output``."""
    base = tmp_path_factory.mktemp("incremental")
    labels = base / "labels"
    export_world(labels, FIRST, "test", 16, 32)
    export_world(base / "pool", 6, "val", 16, 32)
    index = prepare_index(None, str(base / "pool"), "cityscapes", "val", str(base / "pool"))
    build_pipeline("tiny").save_pretrained(str(base / "model"))
    argv = [
        "--runner=DirectRunner", "--labels", str(labels), "--dataset", "cityscapes",
        "--split", "test", "--index", index, "--model", str(base / "model"), "--steps", "1",
        "--size", "16x32", "--shard-size", "4", "--batch-size", "4", "--preview-count", "0",
    ]  # fmt: skip
    output = base / "first"
    first = run(argv + ["--output", str(output)])
    return {"argv": argv, "labels": labels, "output": output, "first": first, "base": base}


def files(output: Path) -> dict[str, bytes]:
    """Every shard file (tars, stats, parts) of an output: name -> bytes."""
    return {p.name: p.read_bytes() for p in sorted(output.glob("aug-*"))}


def test_first_run_records_the_fingerprint_and_a_part_per_shard(setup):
    output, first = setup["output"], setup["first"]
    assert (first.inputs, first.written, first.shards) == (FIRST, FIRST, 2)
    for stats in output.glob("aug-*.stats.json"):
        recorded = json.loads(stats.read_text())["fingerprint"]
        assert recorded["steps"] == 1 and recorded["size"] == "16x32"
        assert recorded["exemplar_path"] == DEFAULT_EXEMPLAR_PATH
        assert len(recorded["model_sha256"]) == 64 and recorded["exemplar_pool"].startswith("index")
        assert (output / stats.name.replace(".stats.json", ".manifest.parquet")).is_file()


def test_a_grown_input_set_renders_only_the_new_inputs_into_new_shards(setup, tmp_path):
    output = tmp_path / "out"
    shutil.copytree(setup["output"], output)
    before = files(output)
    labels = tmp_path / "labels"
    shutil.copytree(setup["labels"], labels)
    export_world(labels, GROWN - FIRST, "test", 16, 32, start=FIRST)
    argv = [a if a != str(setup["labels"]) else str(labels) for a in setup["argv"]]
    summary = run(argv + ["--output", str(output)])
    assert summary.synthesized == GROWN - FIRST and summary.skipped_shards == 2
    assert (summary.inputs, summary.written, summary.shards) == (GROWN, GROWN, 3)
    after = files(output)
    assert {name: after[name] for name in before} == before  # finished shards untouched
    assert sorted(set(after) - set(before)) == [
        "aug-000002.manifest.parquet", "aug-000002.stats.json", "aug-000002.tar"
    ]  # fmt: skip
    rows = read_manifest(str(output / "manifest.parquet")).to_pylist()
    first_rows = read_manifest(str(setup["output"] / "manifest.parquet")).to_pylist()
    assert rows[: len(first_rows)] == first_rows  # shard order: the old shards come first
    assert {r["shard"] for r in rows[len(first_rows) :]} == {"aug-000002.tar"}
    assert len({r["key"] for r in rows}) == GROWN


def test_another_fingerprint_stops_before_any_model_work(setup, tmp_path):
    output = tmp_path / "out"
    shutil.copytree(setup["output"], output)
    before = files(output)
    other_path = next(p for p in EXEMPLAR_PATHS if p != DEFAULT_EXEMPLAR_PATH)
    argv = setup["argv"] + ["--output", str(output), "--steps", "2", "--guidance", "3.0",
                            "--exemplar-path", other_path]  # fmt: skip
    with pytest.raises(FingerprintMismatchError) as caught:
        # raised at graph construction, on the launcher: nothing ran
        build_augment(beam.Pipeline(), AugmentOptions(alias_labels_flag(argv)))
    assert set(caught.value.differences) == {"steps", "guidance", "exemplar_path"}
    message = str(caught.value)
    assert "steps: 1 in the output, 2 now" in message and "--overwrite" in message
    assert "--output" in message and "aug-000000.tar" in message
    with pytest.raises(FingerprintMismatchError):
        run(argv)
    assert main(argv) == EXIT_BAD_LAUNCH  # the command line: a launch error, exit 2
    assert files(output) == before


def test_overwrite_renders_every_shard_again_with_the_new_fingerprint(setup, tmp_path):
    output = tmp_path / "out"
    shutil.copytree(setup["output"], output)
    (output / "aug-000007.tar").write_bytes(b"a stale shard from an older, bigger run")
    summary = run(setup["argv"] + ["--output", str(output), "--steps", "2", "--overwrite"])
    assert (summary.synthesized, summary.skipped_shards, summary.written) == (FIRST, 0, FIRST)
    assert sorted(p.name for p in output.glob("aug-*.tar")) == ["aug-000000.tar", "aug-000001.tar"]
    for stats in output.glob("aug-*.stats.json"):
        assert json.loads(stats.read_text())["fingerprint"]["steps"] == 2
    rerun = run(setup["argv"] + ["--output", str(output), "--steps", "2"])
    assert rerun.synthesized == 0 and rerun.skipped_shards == 2


def test_a_removed_input_keeps_its_finished_shard_and_row(setup, tmp_path):
    output = tmp_path / "out"
    shutil.copytree(setup["output"], output)
    before = files(output)
    labels = tmp_path / "labels"
    shutil.copytree(setup["labels"], labels)
    removed = sorted(labels.glob("gtFine/test/*/*_gtFine_labelIds.png"))[0]
    for path in labels.glob(f"**/{removed.name.split('_gtFine')[0]}_*"):
        os.remove(path)
    argv = [a if a != str(setup["labels"]) else str(labels) for a in setup["argv"]]
    summary = run(argv + ["--output", str(output)])
    assert summary.synthesized == 0 and files(output) == before
    assert summary.inputs == FIRST  # the manifest describes the output: the removed row stays
