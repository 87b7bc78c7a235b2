"""--pool-labels-from: exemplar pools of photos without labels, labelled once by a segmenter.

Real files throughout: a night-domain world exported in the Cityscapes layout, the same
photos copied into a plain folder beside an unreadable one, a random SmallSegmenter saved
as jobs.train_segmenter saves one, the tiny diffusers checkpoint, real DirectRunner runs,
tars read back with webdataset, manifests read with pyarrow."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from amadapter.io.sample_format import decode_sample
from amadapter.models.segmentation_models import load_segmentation_model
from amadapter.pipelines.model_factory import build_pipeline
from amadapter.retrieval.store import IndexStore
from amadapter.world.export import export_world
from jobs.augment import EXIT_BAD_LAUNCH, main as augment_main, run
from jobs.build_index import main as build_index
from storage.exemplar_pool import SKIPPED_FILE
from storage.fingerprint import FingerprintMismatchError, checkpoint_sha256
from storage.label_sources import list_label_sources
from storage.manifest import read_manifest
from tests.test_quality_filter import save_small_segmenter
from tests.test_retrieval_job import index_rows

POOL = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("pool_labels")
    export_world(base / "labels", 4, "test", 16, 32)
    export_world(base / "night", POOL, "val", 16, 32, domain="night")
    footage = base / "footage" / "val" / "drive"
    footage.mkdir(parents=True)
    for photo in sorted((base / "night/leftImg8bit/val/world").glob("*.png")):
        shutil.copy(photo, footage / photo.name.replace("_leftImg8bit", ""))
    (footage / "broken.jpg").write_bytes(b"not a jpeg")
    build_pipeline("tiny").save_pretrained(str(base / "model"))
    for seed in (1, 2):
        save_small_segmenter(base / f"segmenter{seed}", seed=seed)
    return base


def _predicted(segmenter, photo_path) -> np.ndarray:
    photo = np.asarray(Image.open(photo_path).convert("RGB"))
    return load_segmentation_model(segmenter).logits(photo[None]).argmax(dim=1)[0].numpy().astype(np.uint8)


def test_build_index_labels_the_photos_and_names_the_unreadable_one(setup, tmp_path, capsys):
    index, segmenter = tmp_path / "index", setup / "segmenter1"
    argv = ["--pool", str(setup / "footage"), "--dataset", "folder", "--pool-labels-from", str(segmenter),
            "--output", str(index)]  # fmt: skip
    report = build_index(argv)
    out = capsys.readouterr().out
    assert (report.added, report.total) == (POOL, POOL)
    ((key, error),) = report.skipped
    broken = str(setup / "footage/val/drive/broken.jpg")
    assert key.startswith("broken-") and error.code == "unreadable_image" and error.path == broken
    assert f"pool {setup / 'footage'}: {POOL + 1} photos to label" in out and broken in out

    sha = checkpoint_sha256(str(segmenter))
    store = IndexStore(str(index))
    assert store.pool_labels() == {"predicted_by": str(segmenter), "segmenter_sha256": sha}
    for row in index_rows(index):
        assert row["label_path"] == str(index / f"labels-{sha[:12]}" / f"{row['key']}.png")
        assert row["label_format"] == "train_ids" and row["photo_path"].startswith(str(setup / "footage"))
        assert np.array_equal(np.asarray(Image.open(row["label_path"])), _predicted(segmenter, row["photo_path"]))
    (skipped_row,) = read_manifest(str(index / SKIPPED_FILE)).to_pylist()
    assert skipped_row["status"] == "failed" and skipped_row["source"] == broken
    assert skipped_row["error_code"] == "unreadable_image" and broken in skipped_row["error"]

    # an update with another segmenter would mix two labellings: refused, then rebuilt on request
    other = ["--pool-labels-from", str(setup / "segmenter2")]
    with pytest.raises(SystemExit, match="rebuild it"):
        build_index(argv[:4] + other + argv[6:])
    rebuilt = build_index(argv[:4] + other + argv[6:] + ["--rebuild"])
    assert rebuilt.total == POOL and IndexStore(str(index)).pool_labels()["predicted_by"] == str(setup / "segmenter2")
    labels_dirs = sorted(p.name for p in index.glob("labels-*"))
    assert len(labels_dirs) == 2  # the first labelling's maps were never overwritten


def test_a_labelled_root_keeps_its_keys_and_its_label_maps_are_ignored(setup, tmp_path):
    index = tmp_path / "index"
    build_index(["--pool", str(setup / "night"), "--dataset", "cityscapes", "--split", "val",
                 "--pool-labels-from", str(setup / "segmenter1"), "--output", str(index)])  # fmt: skip
    rows = index_rows(index)
    labelled = list_label_sources(str(setup / "night"), "cityscapes", "val")
    assert [r["key"] for r in rows] == [s.key for s in labelled]  # the same exemplar identities
    assert all("gtFine" not in r["label_path"] for r in rows)


def test_the_beam_build_writes_the_local_build_index(setup, tmp_path):
    argv = ["--pool", str(setup / "footage"), "--dataset", "folder",
            "--pool-labels-from", str(setup / "segmenter1"), "--output"]  # fmt: skip
    build_index(argv + [str(tmp_path / "local")])
    report = build_index(argv + [str(tmp_path / "beam"), "--runner=DirectRunner"])
    assert (report.total, [key.split("-")[0] for key, _ in report.skipped]) == (POOL, ["broken"])
    assert same_predicted_index(tmp_path / "beam", tmp_path / "local")


def same_predicted_index(index, reference) -> bool:
    """The rows agree but for where the predicted maps live, and the maps agree byte for byte."""
    rows, expected = index_rows(index), index_rows(reference)
    maps = [open(r["label_path"], "rb").read() for r in rows]
    expected_maps = [open(r["label_path"], "rb").read() for r in expected]
    strip = lambda table: [{k: v for k, v in r.items() if k != "label_path"} for r in table]  # noqa: E731
    return strip(rows) == strip(expected) and maps == expected_maps


def test_augment_job_renders_from_predicted_labels_and_says_so(setup, tmp_path):
    segmenter, output = setup / "segmenter1", tmp_path / "out"
    argv = ["--runner=DirectRunner", "--direct_running_mode=multi_threading", "--direct_num_workers=2",
            "--labels", str(setup / "labels"), "--split", "test",
            "--exemplars", str(setup / "footage"), "--exemplars-dataset", "folder", "--exemplars-split", "val",
            "--pool-labels-from", str(segmenter), "--model", str(setup / "model"), "--steps", "1",
            "--size", "16x32", "--shard-size", "2", "--image-format", "png", "--preview-count", "0"]  # fmt: skip
    summary = run(argv + ["--output", str(output)])
    assert (summary.written, summary.failed) == (4, 0)
    sha = checkpoint_sha256(str(segmenter))
    urls = sorted(str(p) for p in output.glob("aug-*.tar"))
    samples = [decode_sample(s) for s in wds.WebDataset(urls, shardshuffle=False)]
    assert len(samples) == 4
    for _, _, _, meta in samples:
        assert meta["exemplar_labels"] == {"predicted": True, "predicted_by": str(segmenter), "segmenter_sha256": sha}
        exemplar = meta["exemplar"]
        assert exemplar["label"].startswith(str(output / "_index" / f"labels-{sha[:12]}"))
        assert np.array_equal(np.asarray(Image.open(exemplar["label"])), _predicted(segmenter, exemplar["photo"]))
    stats = json.loads(next(output.glob("aug-*.stats.json")).read_text())
    assert stats["fingerprint"]["pool_labels"]["segmenter_sha256"] == sha
    assert read_manifest(str(output / "manifest.parquet")).column("status").to_pylist() == ["written"] * 4
    (skipped,) = pq.read_table(output / "_index" / SKIPPED_FILE).to_pylist()
    assert skipped["source"].endswith("broken.jpg") and skipped["error_code"] == "unreadable_image"

    other = [a if a != str(segmenter) else str(setup / "segmenter2") for a in argv]
    with pytest.raises(FingerprintMismatchError, match="pool_labels"):
        run(other + ["--output", str(output)])


def test_launch_refuses_an_index_or_a_folder_without_a_segmenter(setup, tmp_path):
    base = ["--runner=DirectRunner", "--labels", str(setup / "labels"), "--split", "test",
            "--model", str(setup / "model"), "--size", "16x32", "--output", str(tmp_path / "o")]  # fmt: skip
    with_index = base + ["--index", str(tmp_path), "--pool-labels-from", str(setup / "segmenter1")]
    assert augment_main(with_index) == EXIT_BAD_LAUNCH
    not_a_segmenter = base + ["--exemplars", str(setup / "footage"), "--exemplars-dataset", "folder",
                              "--exemplars-split", "val", "--pool-labels-from", str(setup / "model")]  # fmt: skip
    assert augment_main(not_a_segmenter) == EXIT_BAD_LAUNCH


def test_the_filter_needs_labelled_reference_photos_with_a_predicted_pool(setup, tmp_path):
    argv = ["--runner=DirectRunner", "--labels", str(setup / "labels"), "--split", "test",
            "--exemplars", str(setup / "footage"), "--exemplars-dataset", "folder", "--exemplars-split", "val",
            "--pool-labels-from", str(setup / "segmenter1"), "--filter-segmenter", str(setup / "segmenter1"),
            "--model", str(setup / "model"), "--size", "16x32", "--output", str(tmp_path / "o")]  # fmt: skip
    assert augment_main(argv) == EXIT_BAD_LAUNCH
    assert not (tmp_path / "o" / "manifest.parquet").exists()


@pytest.mark.parametrize("runner", [[], ["--runner=DirectRunner"]])
def test_a_pool_of_unreadable_photos_fails_and_still_lists_them(setup, tmp_path, runner):
    footage = tmp_path / "footage"
    footage.mkdir()
    (footage / "broken.jpg").write_bytes(b"not a jpeg")
    index = tmp_path / "index"
    with pytest.raises(SystemExit, match="empty_pool"):
        build_index(["--pool", str(footage), "--dataset", "folder", "--pool-labels-from", str(setup / "segmenter1"),
                     "--output", str(index), *runner])  # fmt: skip
    (row,) = read_manifest(str(index / SKIPPED_FILE)).to_pylist()
    assert row["source"] == str(footage / "broken.jpg") and row["error_code"] == "unreadable_image"
