import numpy as np
import pytest
from PIL import Image

from amadapter.io import labels
from amadapter.io.errors import NotALabelMapError, UnknownColorError, UnknownLabelIdError
from tests.conftest import BDD_MASK, CITYSCAPES_LABEL_DIR, CITYSCAPES_STEM


def _read(name: str) -> np.ndarray:
    return np.array(Image.open(CITYSCAPES_LABEL_DIR / f"{CITYSCAPES_STEM}_gtFine_{name}.png"))


def _class_boundaries(m: np.ndarray) -> np.ndarray:
    padded = np.pad(m, 1, mode="edge")
    out = np.zeros(m.shape, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out |= padded[1 + dy : 1 + dy + m.shape[0], 1 + dx : 1 + dx + m.shape[1]] != m
    return out


def test_class_space_is_cityscapes_train_classes():
    assert labels.NUM_CLASSES == 19
    assert labels.CLASS_NAMES[0] == "road" and labels.CLASS_NAMES[-1] == "bicycle"
    assert labels.PALETTE.shape == (19, 3)
    assert labels.LABEL_ID_TO_TRAIN_ID[7] == 0  # road
    assert labels.LABEL_ID_TO_TRAIN_ID[33] == 18  # bicycle
    assert labels.LABEL_ID_TO_TRAIN_ID[0] == labels.IGNORE_ID  # unlabeled
    assert labels.LABEL_ID_TO_TRAIN_ID[34] == -1  # not in the table


def test_real_label_ids_map_to_the_instance_file_and_train_id_file():
    label_ids = _read("labelIds")
    train_ids = labels.label_ids_to_train_ids(label_ids, "labelIds.png")
    # The instance map encodes the label ID (id, or id*1000+n for instances): exact.
    instance = _read("instanceIds").astype(np.int64)
    from_instance = np.where(instance < 1000, instance, instance // 1000)
    assert np.array_equal(labels.label_ids_to_train_ids(from_instance.astype(np.uint8)), train_ids)
    # The shipped labelTrainIds fixture was downscaled separately from labelIds, so
    # 77 of 32,768 pixels differ, every one on a class boundary of that fixture.
    # Off the boundaries the mapping must agree pixel for pixel.
    fixture = _read("labelTrainIds")
    interior = ~_class_boundaries(fixture)
    assert interior.mean() > 0.8  # 85% of this small, busy frame
    assert np.array_equal(train_ids[interior], fixture[interior])
    assert (train_ids != fixture).sum() <= 100


def test_bdd_palette_mask_is_read_by_index():
    image = Image.open(BDD_MASK)
    assert image.mode == "P"
    ids = labels.check_train_ids(np.array(image), str(BDD_MASK))
    assert set(np.unique(ids).tolist()) == {0, 1, 2, 5, 6, 7, 8, 9, 10, 13, 14}


def test_colour_round_trip_and_polegroup_colour_reads_as_pole():
    train_ids = _read("labelTrainIds")
    assert np.array_equal(labels.colors_to_train_ids(labels.train_ids_to_colors(train_ids)), train_ids)
    pole_grey = np.full((1, 1, 3), 153, dtype=np.uint8)
    assert labels.colors_to_train_ids(pole_grey)[0, 0] == 5
    dynamic = np.array([[[111, 74, 0]]], dtype=np.uint8)
    assert labels.colors_to_train_ids(dynamic)[0, 0] == labels.IGNORE_ID


def test_unknown_label_id_is_named():
    bad = np.full((4, 4), 7, dtype=np.uint8)
    bad[1, 2] = 40
    with pytest.raises(UnknownLabelIdError, match=r"x\.png.*\[40\]"):
        labels.label_ids_to_train_ids(bad, "x.png")
    with pytest.raises(UnknownLabelIdError, match=r"\[19\]"):
        labels.check_train_ids(np.full((2, 2), 19, dtype=np.uint8), "y.png")


def test_rgb_where_ids_expected_and_unknown_colour_are_named():
    with pytest.raises(NotALabelMapError, match="z.png"):
        labels.check_train_ids(np.zeros((4, 4, 3), dtype=np.uint8), "z.png")
    with pytest.raises(UnknownColorError, match="c.png"):
        labels.colors_to_train_ids(np.full((2, 2, 3), 1, dtype=np.uint8), "c.png")


def test_one_hot_puts_ignore_in_last_channel():
    m = np.array([[0, 255], [18, 3]], dtype=np.uint8)
    oh = labels.one_hot(m)
    assert oh.shape == (20, 2, 2)
    assert oh[0, 0, 0] == 1 and oh[19, 0, 1] == 1 and oh[18, 1, 0] == 1 and oh.sum() == 4
