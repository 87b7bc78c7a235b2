import numpy as np
import pytest

from amadapter.io.errors import EmptyRootError, UnreadableImageError
from amadapter.io.keys import is_safe_key
from storage.label_sources import list_label_sources
from storage.input_reads import read_label_record, read_photo
from tests.conftest import (
    BDD_MASK,
    BDD_ROOT,
    CITYSCAPES_LABEL_DIR,
    CITYSCAPES_ROOT,
    CITYSCAPES_STEM,
)
from tests.layouts import cityscapes_frame, save_image

ROAD_ID, CAR_ID = 7, 26  # Cityscapes label IDs; train IDs 0 and 13


def test_real_cityscapes_root_prefers_label_ids_and_finds_the_photo():
    (source,) = list_label_sources(str(CITYSCAPES_ROOT), "cityscapes", split="val")
    assert source.label_path == str(CITYSCAPES_LABEL_DIR / f"{CITYSCAPES_STEM}_gtFine_labelIds.png")
    assert source.label_format == "ids" and source.dataset == "cityscapes"
    assert source.photo_path.endswith(
        f"leftImg8bit/val/frankfurt/{CITYSCAPES_STEM}_leftImg8bit.png"
    )
    assert source.key.startswith(CITYSCAPES_STEM + "-") and is_safe_key(source.key)
    record = read_label_record(source, photos="require")
    assert read_photo(source.photo_path).shape == (128, 256, 3)
    assert record.train_ids.shape == (128, 256) and record.train_ids.dtype == np.uint8
    (train_ids_source,) = list_label_sources(str(CITYSCAPES_ROOT), "cityscapes", "val", "train_ids")
    assert train_ids_source.label_path.endswith("_gtFine_labelTrainIds.png")
    assert train_ids_source.key == source.key  # a frame keeps its key whichever file is read


def test_real_bdd_root_yields_exactly_its_train_ids():
    (source,) = list_label_sources(str(BDD_ROOT), "bdd100k", split="val")
    assert source.label_path == str(BDD_MASK) and source.photo_path is None
    ids = read_label_record(source).train_ids
    assert ids.shape == (720, 1280)
    assert set(np.unique(ids).tolist()) == {0, 1, 2, 5, 6, 7, 8, 9, 10, 13, 14}


def test_cityscapes_picks_one_file_per_frame(tmp_path):
    ids = np.full((4, 8), ROAD_ID, dtype=np.uint8)
    cityscapes_frame(tmp_path, "aachen_000000_000019", label_ids=ids, train_ids=np.zeros_like(ids))
    cityscapes_frame(
        tmp_path, "aachen_000001_000019", train_ids=np.zeros_like(ids), photo_size=(8, 4)
    )
    sources = list_label_sources(str(tmp_path), "cityscapes", split="val")
    assert [s.label_format for s in sources] == ["ids", "train_ids"]
    assert [s.photo_path is not None for s in sources] == [False, True]
    assert [s.key for s in sources] == sorted(s.key for s in sources)
    assert list_label_sources(str(tmp_path), "cityscapes", "val") == sources  # deterministic


def test_bdd_layout_pairs_masks_with_jpeg_photos(tmp_path):
    masks = tmp_path / "labels" / "sem_seg" / "masks" / "train"
    for name in ("b1", "a2"):
        save_image(masks / f"{name}.png", np.zeros((4, 8), dtype=np.uint8))
    save_image(
        tmp_path / "images" / "10k" / "train" / "a2.jpg", np.zeros((4, 8, 3), dtype=np.uint8)
    )
    sources = list_label_sources(str(tmp_path), "bdd100k")  # split defaults to train
    assert [s.label_path.rsplit("/", 1)[1] for s in sources] == ["a2.png", "b1.png"]
    assert (
        sources[0].photo_path.endswith("images/10k/train/a2.jpg") and sources[1].photo_path is None
    )


def test_folder_reads_pngs_at_any_depth_with_distinct_keys(tmp_path):
    for rel in ("x.png", "sub/x.png", "sub/deeper/y.png"):
        save_image(tmp_path / rel, np.zeros((2, 2), dtype=np.uint8))
    (tmp_path / "notes.txt").write_text("not a label map")
    sources = list_label_sources(str(tmp_path), "folder", label_format="train_ids")
    assert len(sources) == 3 and len({s.key for s in sources}) == 3
    assert all(s.label_format == "train_ids" and s.photo_path is None for s in sources)
    assert len(list_label_sources(str(tmp_path), "folder", split="sub", label_format="ids")) == 2


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(UnreadableImageError, match="gone.jpg: cannot read the file"):
        read_photo(str(tmp_path / "gone.jpg"))


def test_empty_or_missing_root_is_named(tmp_path):
    with pytest.raises(EmptyRootError, match=str(tmp_path)):
        list_label_sources(str(tmp_path), "cityscapes", split="val")
    with pytest.raises(EmptyRootError, match="no folder label maps"):
        list_label_sources(str(tmp_path / "missing"), "folder", label_format="ids")


def test_bad_arguments_are_caller_bugs(tmp_path):
    with pytest.raises(ValueError, match="dataset"):
        list_label_sources(str(tmp_path), "kitti")
    with pytest.raises(ValueError, match="label_format"):
        list_label_sources(str(tmp_path), "folder")
    with pytest.raises(ValueError, match="bdd100k label_format"):
        list_label_sources(str(tmp_path), "bdd100k", label_format="ids")
