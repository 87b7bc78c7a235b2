"""The augment job end to end: DirectRunner, a real (tiny) checkpoint directory, real PNGs
and tars. One uninterrupted run (module fixture) is the reference for resume, SIGKILL and
multi-process runs, which must reproduce its samples byte for byte."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from amadapter.io.resize import resize_labels_nearest
from amadapter.data import shards
from amadapter.pipelines.model_factory import build_pipeline
from amadapter.retrieval import ExemplarIndex
from amadapter.world.export import export_world
from jobs.augment import run
from pipeline.augment_graph import DEFAULT_MODEL_DIR
from pipeline.exemplar_index import prepare_index
from tests.conftest import REPO
from storage.label_sources import list_label_sources
from storage.manifest import read_manifest
from storage.input_reads import read_label_record

SIZE = "16x32"
TARGETS, POOL = 8, 6


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """World targets + two bad label maps, a pool index, and one pool photo deleted after
    indexing. Returns the job's argv (without --output) and what the run should report."""
    root = tmp_path_factory.mktemp("data")
    export_world(root, TARGETS, "test", 16, 32)
    export_world(root, POOL, "val", 16, 32)
    labels = root / "gtFine" / "test" / "world"
    (labels / "world_999990_000000_gtFine_labelIds.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    Image.fromarray(np.full((16, 32), 99, np.uint8)).save(
        labels / "world_999991_000000_gtFine_labelIds.png"
    )
    index = prepare_index(None, str(root), "cityscapes", "val", str(root))
    # A photo that some target retrieves disappears after indexing: only its targets may fail.
    good = [s for s in list_label_sources(str(root), "cityscapes", "test") if "99999" not in s.key]
    maps = [read_label_record(s).train_ids for s in good]
    best = [
        m[0]
        for m in ExemplarIndex.load(index).query(maps, 1, target_paths=[s.label_path for s in good])
    ]
    chosen = min({m.photo_path for m in best}, key=[m.photo_path for m in best].count)
    os.remove(chosen)
    model = tmp_path_factory.mktemp("model")
    build_pipeline("tiny").save_pretrained(str(model))
    argv = [
        "--runner=DirectRunner", "--labels", str(root), "--dataset", "cityscapes",
        "--split", "test",
        "--index", index, "--model", str(model), "--steps", "2", "--size", SIZE,
        "--shard-size", "4", "--batch-size", "3", "--image-format", "png", "--preview-count", "4",
    ]  # fmt: skip
    missing = {s.key + "-s0" for s, m in zip(good, best) if m.photo_path == chosen}
    return {"argv": argv, "root": root, "missing_photo": chosen, "missing_keys": missing}


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("reference"))
    summary = run(inputs["argv"] + ["--output", output])
    return output, summary


def shard_members(output: str) -> dict[str, bytes]:
    """Every member of every final tar: name -> bytes."""
    members = {}
    for path in sorted(Path(output).glob("aug-*.tar")):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                members[f"{path.name}/{member.name}"] = tar.extractfile(member).read()
    return members


def test_every_input_is_written_or_failed_with_its_reason(inputs, reference):
    output, summary = reference
    rows = {
        r["key"]: r for r in read_manifest(os.path.join(output, "manifest.parquet")).to_pylist()
    }
    assert summary.inputs == len(rows) == TARGETS + 2 == summary.written + summary.failed
    failed = {k: r for k, r in rows.items() if r["status"] == "failed"}
    by_code = {}
    for key, row in failed.items():
        by_code.setdefault(row["error_code"], set()).add(key)
    corrupt = next(k for k in failed if k.startswith("world_999990"))
    unknown = next(k for k in failed if k.startswith("world_999991"))
    assert "world_999990_000000_gtFine_labelIds.png" in failed[corrupt]["error"]
    assert failed[unknown]["error_code"] == "unknown_label_id"
    exemplar_failures = set(failed) - {corrupt, unknown}
    assert exemplar_failures == inputs["missing_keys"] and exemplar_failures
    for key in exemplar_failures:
        assert failed[key]["error_code"] == "unreadable_image"
        assert inputs["missing_photo"] in failed[key]["error"]
    written = {k for k, r in rows.items() if r["status"] == "written"}
    assert len(written) == TARGETS - len(exemplar_failures) == summary.synthesized
    assert summary.shards == 3 and summary.model_calls >= 2


def test_shards_read_back_with_tar_and_webdataset(inputs, reference):
    output, _ = reference
    tars = sorted(str(p) for p in Path(output).glob("aug-*.tar"))
    listed = [
        subprocess.run(["tar", "-tf", t], check=True, capture_output=True, text=True).stdout
        for t in tars
    ]
    rows = read_manifest(os.path.join(output, "manifest.parquet")).to_pylist()
    written = sum(r["status"] == "written" for r in rows)
    assert sum(text.count(".image.png") for text in listed) == written
    sources = {s.key: s for s in list_label_sources(str(inputs["root"]), "cityscapes", "test")}
    for key, image, label in shards(tars, with_key=True):
        assert image.shape == (16, 32, 3) and image.dtype == np.uint8
        source_ids = read_label_record(sources[key.rsplit("-s", 1)[0]]).train_ids
        expected = resize_labels_nearest(torch.from_numpy(source_ids)[None], (16, 32))[0].numpy()
        assert np.array_equal(label, expected)


def test_preview_is_written(reference):
    output, summary = reference
    assert summary.preview == os.path.join(output, "preview.html")
    page = Path(summary.preview).read_text()
    assert page.count("<img ") == 3 * 4
    sheet = np.asarray(Image.open(os.path.join(output, "preview.png")))
    assert sheet.ndim == 3 and sheet.shape[0] >= 4 * 128


def test_rerun_renders_nothing_and_keeps_every_byte(inputs, reference, tmp_path):
    output, _ = reference
    copy = str(tmp_path / "copy")
    shutil.copytree(output, copy)
    summary = run(inputs["argv"] + ["--output", copy])
    assert summary.model_calls == 0 and summary.synthesized == 0 and summary.skipped_shards == 3
    assert (summary.inputs, summary.written) == (TARGETS + 2, TARGETS - len(inputs["missing_keys"]))
    assert shard_members(copy) == shard_members(output)


def rendered_shards(output: Path) -> list[Path]:
    """Finished shards holding at least one rendered sample (stats files appear atomically)."""
    return [p for p in output.glob("*.stats.json") if json.loads(p.read_text())["count"] > 0]


JOB = """
import sys
from jobs.augment import main
main(sys.argv[1:])
"""


def test_sigkill_then_rerun_gives_the_same_samples(inputs, reference, tmp_path):
    output = tmp_path / "killed"
    job = subprocess.Popen(
        [sys.executable, "-c", JOB, *inputs["argv"], "--output", str(output)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not rendered_shards(output) and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)
    job.wait()
    finished_before = len(list(output.glob("*.stats.json")))
    assert (
        rendered_shards(output) and finished_before < 3
    ), "kill after a rendered shard, before the end"
    for tar in output.glob("aug-*.tar"):  # whatever has a final name is a whole tar
        with tarfile.open(tar) as archive:
            assert all(archive.extractfile(m).read() is not None for m in archive.getmembers())
    # The killed run kept the manifest rows of its finished shards: one part beside each.
    kept = {p.name[: -len(".stats.json")] for p in output.glob("aug-*.stats.json")}
    kept_rows = {
        name: read_manifest(str(output / f"{name}.manifest.parquet")).to_pylist() for name in kept
    }
    assert all(rows and all(r["key"] for r in rows) for rows in kept_rows.values())
    summary = run(inputs["argv"] + ["--output", str(output)])
    assert summary.skipped_shards == finished_before
    assert 0 < summary.model_calls < reference[1].model_calls
    assert shard_members(str(output)) == shard_members(reference[0])
    parts = [
        read_manifest(str(p)).to_pylist() for p in sorted(output.glob("aug-*.manifest.parquet"))
    ]
    manifest = read_manifest(str(output / "manifest.parquet")).to_pylist()
    assert manifest == [row for part in parts for row in part]  # the union of the parts
    assert all(kept_rows[name] == parts[int(name[-6:])] for name in kept)  # kept as they were
    reference_rows = read_manifest(os.path.join(reference[0], "manifest.parquet")).to_pylist()
    placed = [(r["key"], r["status"], r["shard"], r["error_code"]) for r in manifest]
    assert placed == [(r["key"], r["status"], r["shard"], r["error_code"]) for r in reference_rows]


def test_two_worker_processes_give_the_same_samples(inputs, reference, tmp_path):
    output = str(tmp_path / "multi")
    argv = inputs["argv"] + ["--output", output, "--direct_running_mode=multi_processing",
                             "--direct_num_workers=2"]  # fmt: skip
    summary = run(argv)
    assert (summary.inputs, summary.written) == (reference[1].inputs, reference[1].written)
    assert shard_members(output) == shard_members(reference[0])


def test_an_empty_pool_fails_every_target_by_name(inputs, tmp_path):
    empty = tmp_path / "pool"  # label maps without photos: no usable exemplar
    export_world(empty, 2, "test", 16, 32)
    shutil.rmtree(empty / "leftImg8bit")
    argv = [a for a in inputs["argv"]]
    i = argv.index("--index")
    del argv[i : i + 2]
    summary = run(argv + ["--exemplars", str(empty), "--output", str(tmp_path / "out")])
    assert (summary.inputs, summary.written, summary.model_calls) == (TARGETS + 2, 0, 0)
    assert summary.failure_codes["empty_pool"] == TARGETS
    rows = read_manifest(str(tmp_path / "out" / "manifest.parquet")).to_pylist()
    pool_rows = [r for r in rows if r["error_code"] == "empty_pool"]
    assert all("no usable pool entry" in r["error"] for r in pool_rows)


@pytest.mark.skipif(
    not (Path(DEFAULT_MODEL_DIR) / "model_index.json").is_file(),
    reason="the bundled demo model is not committed yet (issue 4)",
)
def test_default_run_with_the_bundled_model(tmp_path):
    """No --labels, no --model: the built-in world and amadapter/demo_model (small and few
    steps here to keep the suite fast; `make demo` runs the defaults)."""
    summary = run(["--runner=DirectRunner", "--output", str(tmp_path), "--steps", "2"])
    assert (summary.inputs, summary.written, summary.shards) == (16, 16, 1)
    listed = subprocess.run(
        ["tar", "-tf", str(tmp_path / "aug-000000.tar")], check=True, capture_output=True, text=True
    ).stdout
    assert listed.count(".image.jpg") == 16 and listed.count(".seg.png") == 16
    assert Path(summary.preview).is_file() and Path(summary.manifest).is_file()
