"""Shards: Beam writing, reading back (webdataset, tarfile, DataLoader), determinism, SIGKILL."""

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time

import apache_beam as beam
import numpy as np
import pytest
import torch
from apache_beam.options.pipeline_options import PipelineOptions
from PIL import Image

from amadapter.data import shards
from amadapter.io.keys import safe_key
from amadapter.io.labels import CLASS_NAMES, IGNORE_ID
from tests.conftest import REPO
from amadapter.io.shard_format import shard_keys
from transforms.assemble_manifest import AssembleManifest
from transforms.assign_shards import AssignShards, assign_shards
from storage.manifest import read_manifest
from storage.records import FailedInput, Sample
from storage.shards import (
    completed_shards,
    shard_is_complete,
    shard_path,
    write_shard,
)
from tests.shard_writing import shard_stats, write_keyed_shards

SHARD_SIZE = 10
TRAIN_VALUES = np.array(list(range(19)) + [IGNORE_ID], dtype=np.uint8)


def make_samples(count: int, seed: int = 0) -> list[Sample]:
    """Samples of varied sizes with blocky random labels and noisy images."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        height, width = 8 * int(rng.integers(2, 4)), 8 * int(rng.integers(2, 5))
        blocks = rng.choice(TRAIN_VALUES, size=(height // 8, width // 8))
        label = np.kron(blocks, np.ones((8, 8), dtype=np.uint8)).astype(np.uint8)
        image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        key = safe_key(f"frame {i}", f"val/frame_{i}")
        samples.append(
            Sample(key, image, label, {"source": f"/data/frame_{i}.png", "seed": np.int64(i)})
        )
    return samples


def make_failures(count: int) -> list[FailedInput]:
    return [
        FailedInput(
            safe_key(f"bad {i}"),
            f"/data/bad_{i}.png",
            "unreadable_image",
            f"bad_{i}.png: truncated",
        )
        for i in range(count)
    ]


def read_with_tarfile(path) -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    members: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for info in tar:
            key, member = info.name.split(".", 1)
            members.setdefault(key, {})[member] = tar.extractfile(info).read()
    return {
        key: (
            np.array(Image.open(io.BytesIO(m.get("image.png") or m["image.jpg"])).convert("RGB")),
            np.array(Image.open(io.BytesIO(m["seg.png"]))),
            json.loads(m["json"]),
        )
        for key, m in members.items()
    }


@pytest.fixture(scope="module")
def beam_run(tmp_path_factory):
    """One DirectRunner run: 53 samples + 3 failures -> AssignShards -> the job's shard writer -> manifest."""
    output = str(tmp_path_factory.mktemp("shards"))
    samples, failures = make_samples(53), make_failures(3)
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as pipeline:
        written = (
            pipeline
            | beam.Create(samples + failures, reshuffle=False)
            | AssignShards(SHARD_SIZE)
        )
        written = write_keyed_shards(written, output, "aug")
        written | AssembleManifest(output, "aug", os.path.join(output, "manifest.parquet"))
    return output, samples, failures


def test_beam_run_writes_sorted_shards_with_stats_and_manifest(beam_run):
    output, samples, failures = beam_run
    expected_shard = assign_shards([s.key for s in samples] + [f.key for f in failures], SHARD_SIZE)
    assert sorted(expected_shard.values())[-1] == 5  # 56 inputs -> shards 0..5
    names = sorted(os.listdir(output))
    exts = (".stats.json", ".tar", ".manifest.parquet")
    shard_files = [f"aug-{i:06d}{ext}" for i in range(6) for ext in exts]
    assert names == sorted(shard_files + ["manifest.parquet"])
    assert completed_shards(output, "aug") == list(range(6))

    manifest = read_manifest(os.path.join(output, "manifest.parquet")).to_pylist()
    by_shard = sorted(expected_shard, key=lambda k: (expected_shard[k], k))
    assert len(manifest) == 56 and [r["key"] for r in manifest] == by_shard
    for row in manifest:
        if row["status"] == "written":
            assert (
                row["shard"] == f"aug-{expected_shard[row['key']]:06d}.tar" and row["error"] is None
            )
        else:
            assert row["shard"] is None and row["error_code"] == "unreadable_image"
            assert row["error"].endswith("truncated") and row["source"].startswith("/data/bad_")
    assert sum(r["status"] == "failed" for r in manifest) == 3

    by_key = {s.key: s for s in samples}
    for index in range(6):
        stats = shard_stats(output, "aug", index)
        assert shard_keys(stats) == {k for k, i in expected_shard.items() if i == index}
        in_tar = read_with_tarfile(shard_path(output, "aug", index))
        assert stats["count"] == len(in_tar) and [w["key"] for w in stats["written"]] == sorted(
            in_tar
        )
        assert stats["bytes"] == os.path.getsize(shard_path(output, "aug", index))
        counts = sum(np.bincount(by_key[k].label.ravel(), minlength=256) for k in in_tar)
        assert stats["class_pixels"] == {
            **{name: int(counts[i]) for i, name in enumerate(CLASS_NAMES)},
            "ignore": int(counts[IGNORE_ID]),
        }


def test_webdataset_and_tarfile_read_back_the_same_arrays(beam_run):
    output, samples, _ = beam_run
    from_tarfile = {}
    for index in range(6):
        from_tarfile.update(read_with_tarfile(shard_path(output, "aug", index)))
    from_webdataset = {
        key: (image, label) for key, image, label in shards(f"{output}/aug-*.tar", with_key=True)
    }
    assert len(from_webdataset) == len(from_tarfile) == 53
    for sample in samples:
        image, label = from_webdataset[sample.key]
        assert label.dtype == np.uint8 and label.shape == sample.image.shape[:2]
        assert np.array_equal(label, sample.label) and np.array_equal(image, sample.image)
        tar_image, tar_label, meta = from_tarfile[sample.key]
        assert np.array_equal(tar_image, image) and np.array_equal(tar_label, label)
        assert meta == {"source": sample.meta["source"], "seed": int(sample.meta["seed"])}


def test_dataloader_with_two_workers_reads_every_sample_exactly_once(beam_run):
    output, samples, _ = beam_run
    loader = torch.utils.data.DataLoader(
        shards(f"{output}/aug-{{000000..000005}}.tar", with_key=True),
        batch_size=None,
        num_workers=2,
    )
    keys = []
    for key, image, label in loader:
        assert image.dtype == torch.uint8 and label.dtype == torch.uint8 and label.ndim == 2
        keys.append(key)
    assert sorted(keys) == sorted(s.key for s in samples)


def test_library_writer_matches_the_beam_writer_byte_for_byte(beam_run, tmp_path):
    output, samples, failures = beam_run
    shard_of = assign_shards([s.key for s in samples] + [f.key for f in failures], SHARD_SIZE)
    for run in ("a", "b"):
        write_shard(
            str(tmp_path / run),
            "aug",
            3,
            sorted((s for s in samples if shard_of[s.key] == 3), key=lambda s: s.key),
            [f for f in failures if shard_of[f.key] == 3],
            image_format="png",
        )
    for name in ("aug-000003.tar", "aug-000003.stats.json", "aug-000003.manifest.parquet"):
        first = (tmp_path / "a" / name).read_bytes()
        assert (
            first
            == (tmp_path / "b" / name).read_bytes()
            == open(os.path.join(output, name), "rb").read()
        )


def test_jpeg_shards_keep_exact_labels(tmp_path):
    samples = make_samples(4, seed=1)
    stats = write_shard(str(tmp_path), "jpg", 0, samples)
    assert stats["image_format"] == "jpg"
    for key, image, label in shards(str(tmp_path / "jpg-000000.tar"), with_key=True):
        original = next(s for s in samples if s.key == key)
        assert np.array_equal(
            label, original.label
        )  # labels are lossless whatever the image format
        assert image.shape == original.image.shape


def test_writer_refuses_unsorted_or_unsafe_samples(tmp_path):
    first, second = make_samples(2)
    with pytest.raises(ValueError, match="sorted"):
        write_shard(
            str(tmp_path), "aug", 0, sorted([first, second], key=lambda s: s.key, reverse=True)
        )
    unsafe = Sample("a.b", first.image, first.label, first.meta)
    with pytest.raises(ValueError, match="unsafe"):
        write_shard(str(tmp_path), "aug", 1, [unsafe])
    assert os.listdir(tmp_path) == []  # no tar, no stats, no temporary file left behind
    with pytest.raises(ValueError, match="duplicate"):
        assign_shards(["k", "j", "k"], 2)


def test_rewriting_a_finished_shard_unmarks_it_until_the_new_stats_land(tmp_path):
    samples = sorted(make_samples(3), key=lambda s: s.key)
    write_shard(str(tmp_path), "aug", 0, samples)
    assert shard_is_complete(str(tmp_path), "aug", 0)
    with pytest.raises(ValueError, match="sorted"):
        write_shard(str(tmp_path), "aug", 0, reversed(samples))
    assert not shard_is_complete(str(tmp_path), "aug", 0)
    # the earlier, whole tar and part; no temporary file
    assert sorted(os.listdir(tmp_path)) == ["aug-000000.manifest.parquet", "aug-000000.tar"]


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from tests.test_shards import make_samples
    from storage.shards import write_shard

    output, ready = sys.argv[1], Path(sys.argv[2])

    def slow_samples():
        for i, sample in enumerate(sorted(make_samples(6), key=lambda s: s.key)):
            if i == 3:
                ready.write_text("three samples streamed")
                time.sleep(60)  # killed here, mid-shard
            yield sample

    write_shard(output, "aug", 0, slow_samples())
    """)


def test_writer_killed_mid_shard_leaves_no_tar_under_a_final_name(tmp_path):
    output, ready = tmp_path / "out", tmp_path / "ready"
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(output), str(ready)],
        cwd=REPO,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert writer.poll() is None, writer.stderr.read().decode()
        assert time.monotonic() < deadline, "writer never reached the middle of the shard"
        time.sleep(0.05)
    os.kill(writer.pid, signal.SIGKILL)
    assert writer.wait(timeout=30) == -signal.SIGKILL
    left = os.listdir(output)
    assert len(left) == 1 and left[0].startswith("aug-000000.tar.tmp-")  # the partial write
    assert os.path.getsize(output / left[0]) > 0
    assert (
        not shard_is_complete(str(output), "aug", 0) and completed_shards(str(output), "aug") == []
    )
