"""python -m jobs.build_index on real files: skipped entries printed, update, folder pools, and
the Beam build (DirectRunner) writing the same index."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from amadapter.retrieval import ExemplarIndex
from amadapter.retrieval.store import IndexFormatError, IndexStore
from jobs.build_index import main
from tests.layouts import save_image
from tests.test_retrieval_index import POOL_LAYOUTS, write_pool
from tests.test_retrieval_score import CAR, street


def test_cityscapes_pool_with_a_corrupt_file_then_an_update(tmp_path, capsys):
    pool, index = tmp_path / "pool", str(tmp_path / "index")
    write_pool(pool, {**dict(list(POOL_LAYOUTS.items())[:3]), "aachen_000000_000009": []})
    corrupt = pool / "gtFine/train/aachen/aachen_000000_000009_gtFine_labelTrainIds.png"
    corrupt.write_bytes(b"")
    argv = ["--pool", str(pool), "--dataset", "cityscapes", "--output", index, "--workers", "2"]
    report = main(argv)
    out = capsys.readouterr().out
    assert (report.added, report.total, len(report.skipped)) == (3, 3, 1)
    assert "skipped aachen_000000_000009" in out and "unreadable_image" in out
    assert str(corrupt) in out
    assert "index " + index + ": 3 entries (3 added, 0 already indexed, 1 skipped)" in out

    write_pool(pool)  # two new frames
    report = main(argv)
    assert (report.added, report.already_indexed, report.total) == (2, 3, 5)
    assert len(ExemplarIndex.load(index)) == 5


def test_folder_pool_pairs_jpeg_photos(tmp_path, capsys):
    pool = tmp_path / "pool"
    photo = np.full((64, 128, 3), 90, np.uint8)
    for name, boxes in (("a", []), ("b", [(CAR, 0.5, 0.9, 0.3, 0.7)]), ("c", [])):
        save_image(pool / "seq" / f"{name}.png", street(64, 128, boxes))
        if name != "c":
            save_image(pool / "seq" / f"{name}.jpg", photo)
    report = main(["--pool", str(pool), "--dataset", "folder", "--label-format", "train_ids",
                   "--output", str(tmp_path / "index")])  # fmt: skip
    assert report.total == 2
    ((key, error),) = report.skipped
    assert key.startswith("c-") and error.code == "missing_photo"
    (ranked,) = ExemplarIndex.load(str(tmp_path / "index")).query(
        [street(64, 128, [(CAR, 0.5, 0.9, 0.3, 0.7)])], k=1, target_paths=[None]
    )
    assert ranked[0].photo_path == str(pool / "seq" / "b.jpg")


def test_an_empty_pool_exits_with_the_reason(tmp_path):
    (tmp_path / "pool").mkdir()
    argv = ["--pool", str(tmp_path / "pool"), "--dataset", "bdd100k", "--output", str(tmp_path / "i")]
    with pytest.raises(SystemExit, match="empty_root"):
        main(argv)
    save_image(tmp_path / "pool/labels/sem_seg/masks/train/x.png", street())  # no photo
    with pytest.raises(SystemExit, match="empty_pool"):
        main(argv)


def test_augment_job_indexes_a_folder_pool_given_with_exemplars(tmp_path):
    from pipeline.exemplar_index import prepare_index

    pool = tmp_path / "pool"
    save_image(pool / "a.png", street(64, 128, [(CAR, 0.5, 0.9, 0.3, 0.7)]))
    save_image(pool / "a.jpg", np.full((64, 128, 3), 90, np.uint8))
    save_image(pool / "b.png", street(64, 128, []))  # no photo: skipped
    path = prepare_index(None, str(pool), "folder", None, str(tmp_path / "out"), "train_ids")
    index = ExemplarIndex.load(path)
    assert len(index) == 1
    (ranked,) = index.query([street(64, 128, [])], k=1, target_paths=[None])
    assert ranked[0].photo_path == str(pool / "a.jpg")


def test_augment_job_rebuilds_its_own_index_left_by_an_older_format(tmp_path, caplog):
    from pipeline.exemplar_index import prepare_index

    pool = tmp_path / "pool"
    save_image(pool / "a.png", street(64, 128, [(CAR, 0.5, 0.9, 0.3, 0.7)]))
    save_image(pool / "a.jpg", np.full((64, 128, 3), 90, np.uint8))
    path = prepare_index(None, str(pool), "folder", None, str(tmp_path / "out"), "train_ids")
    meta_file = tmp_path / "out" / "_index" / "index.json"
    meta = json.loads(meta_file.read_text())
    meta["version"] = 1  # what the previous format wrote
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(IndexFormatError):
        ExemplarIndex.load(path)
    with caplog.at_level("WARNING", logger="augment"):
        assert prepare_index(None, str(pool), "folder", None, str(tmp_path / "out"), "train_ids") == path
    assert "rebuilding the job's own index" in caplog.text
    assert len(ExemplarIndex.load(path)) == 1


def index_rows(path):
    """Every row of an index's parts, sorted by key (the order depends on the build)."""
    store = IndexStore(str(path))
    tables = [pq.read_table(path / part["file"]) for part in store.read_meta()["parts"]]
    return pa.concat_tables(tables).sort_by("key").to_pylist()


def test_beam_build_writes_the_local_build_index_and_updates_it(tmp_path, capsys):
    pool = tmp_path / "pool"
    write_pool(pool, {**dict(list(POOL_LAYOUTS.items())[:3]), "aachen_000000_000009": []})
    (pool / "gtFine/train/aachen/aachen_000000_000009_gtFine_labelTrainIds.png").write_bytes(b"")
    save_image(pool / "gtFine/train/ulm/ulm_000000_000001_gtFine_labelTrainIds.png", street())
    local, beam = tmp_path / "local", tmp_path / "beam"
    argv = ["--pool", str(pool), "--dataset", "cityscapes", "--output"]
    for _ in range(2):  # a build, then an update with two more frames
        expected = main(argv + [str(local)])
        capsys.readouterr()
        report = main(argv + [str(beam), "--runner=DirectRunner"])
        out = capsys.readouterr().out
        assert index_rows(beam) == index_rows(local)
        skipped = sorted((key.split("-")[0], error.code, str(error)) for key, error in report.skipped)
        assert skipped == sorted(
            (key.split("-")[0], error.code, str(error)) for key, error in expected.skipped
        )
        assert [code for _, code, _ in skipped] == ["unreadable_image", "missing_photo"]
        assert all(f"skipped {key}: {error}" in out for key, error in report.skipped)
        assert not list(beam.glob("_build-*"))  # the work folder is gone
        write_pool(pool)  # two new frames
    assert (report.added, report.already_indexed, report.total) == (2, 3, 5)
    (ranked,) = ExemplarIndex.load(str(beam)).query(
        [street(64, 128, POOL_LAYOUTS["bochum_000000_000001"])], k=1, target_paths=[None]
    )
    assert ranked[0].key.startswith("bochum_000000_000001")


def test_beam_options_need_a_runner_and_must_exist(tmp_path):
    argv = ["--pool", str(tmp_path), "--dataset", "cityscapes", "--output", str(tmp_path / "i")]
    with pytest.raises(SystemExit):
        main(argv + ["--dask_client_address", "x:1"])
    with pytest.raises(SystemExit):
        main(argv + ["--runner=DirectRunner", "--direct_num_wrkers=2"])
