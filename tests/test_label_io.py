import io

import numpy as np
import pytest
from PIL import Image

from amadapter.io import labels
from amadapter.io.errors import (
    NotALabelMapError,
    SizeMismatchError,
    UnknownColorError,
    UnknownLabelIdError,
    UnreadableImageError,
)
from amadapter.io.keys import is_safe_key, safe_key
from amadapter.io.label_io import check_same_size, decode_label_map, decode_photo, peek_image_size
from tests.conftest import BDD_MASK, CITYSCAPES_LABEL_DIR, CITYSCAPES_ROOT, CITYSCAPES_STEM
from tests.layouts import png_bytes

LABEL_IDS = CITYSCAPES_LABEL_DIR / f"{CITYSCAPES_STEM}_gtFine_labelIds.png"
PHOTO = CITYSCAPES_ROOT / "leftImg8bit" / "val" / "frankfurt" / f"{CITYSCAPES_STEM}_leftImg8bit.png"


def test_real_label_ids_decode_to_the_table_mapping():
    decoded = decode_label_map(LABEL_IDS.read_bytes(), str(LABEL_IDS), "ids")
    expected = labels.label_ids_to_train_ids(np.array(Image.open(LABEL_IDS)))
    assert decoded.dtype == np.uint8 and decoded.shape == (128, 256)
    assert np.array_equal(decoded, expected)


def test_real_bdd_palette_mask_is_read_by_index():
    decoded = decode_label_map(BDD_MASK.read_bytes(), str(BDD_MASK), "train_ids")
    assert decoded.shape == (720, 1280)
    assert set(np.unique(decoded).tolist()) == {0, 1, 2, 5, 6, 7, 8, 9, 10, 13, 14}


def test_palette_png_ignores_its_colours_for_ids_and_uses_them_for_colour_maps():
    ids = np.array([[0, 13], [255, 18]], dtype=np.uint8)
    all_white = [255] * 768  # if read by colour, every pixel would look alike
    assert np.array_equal(
        decode_label_map(png_bytes(ids, "P", all_white), "p.png", "train_ids"), ids
    )
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: labels.NUM_CLASSES] = labels.PALETTE
    colour_coded = png_bytes(ids, "P", palette.ravel().tolist())
    assert np.array_equal(decode_label_map(colour_coded, "c.png", "color"), ids)


def test_colour_map_decodes_by_exact_palette_match():
    ids = np.array([[0, 1, 2], [11, 18, 255]], dtype=np.uint8)
    rgb = png_bytes(labels.train_ids_to_colors(ids))
    assert np.array_equal(decode_label_map(rgb, "c.png", "color"), ids)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "not a PNG"),
        (b"this is not an image", "not a PNG"),
        (b"\xff\xd8\xff\xe0 a JPEG header", "not a PNG"),
    ],
)
def test_non_png_is_unreadable(data, reason):
    with pytest.raises(UnreadableImageError, match=rf"bad\.png: {reason}"):
        decode_label_map(data, "bad.png", "ids")


def test_truncated_png_is_unreadable():
    data = LABEL_IDS.read_bytes()
    with pytest.raises(UnreadableImageError, match=r"cut\.png: truncated or corrupt"):
        decode_label_map(data[: len(data) // 2], "cut.png", "ids")


def test_unknown_label_id_is_named():
    ids = np.full((3, 3), 7, dtype=np.uint8)
    ids[1, 1] = 40
    with pytest.raises(UnknownLabelIdError, match=r"u\.png.*\[40\]"):
        decode_label_map(png_bytes(ids), "u.png", "ids")
    with pytest.raises(UnknownLabelIdError, match=r"t\.png.*\[40\]"):
        decode_label_map(png_bytes(ids), "t.png", "train_ids")


def test_sixteen_bit_ids_are_range_checked_not_wrapped():
    ids = np.full((2, 2), 7, dtype=np.uint16)
    assert np.array_equal(
        decode_label_map(png_bytes(ids, "I;16"), "ok.png", "ids"), np.zeros((2, 2))
    )
    ids[0, 0] = 256 + 7  # would wrap to 7 (road) in a uint8 cast
    with pytest.raises(UnknownLabelIdError, match="w.png"):
        decode_label_map(png_bytes(ids, "I;16"), "w.png", "ids")


def test_rgb_where_ids_expected_and_grey_where_colours_expected():
    rgb = png_bytes(np.zeros((2, 2, 3), dtype=np.uint8))
    with pytest.raises(NotALabelMapError, match=r"rgb\.png.*mode RGB"):
        decode_label_map(rgb, "rgb.png", "ids")
    with pytest.raises(NotALabelMapError, match=r"grey\.png.*mode L"):
        decode_label_map(png_bytes(np.zeros((2, 2), dtype=np.uint8)), "grey.png", "color")


def test_unknown_colour_is_named():
    with pytest.raises(UnknownColorError, match=r"col\.png.*\(1, 2, 3\)"):
        decode_label_map(
            png_bytes(np.full((2, 2, 3), (1, 2, 3), dtype=np.uint8)), "col.png", "color"
        )


def test_unknown_label_format_is_a_caller_bug():
    with pytest.raises(ValueError, match="label_format"):
        decode_label_map(LABEL_IDS.read_bytes(), "x.png", "labelIds")


def test_photo_decodes_and_its_size_comes_from_the_header():
    photo = decode_photo(PHOTO.read_bytes(), str(PHOTO))
    assert photo.shape == (128, 256, 3) and photo.dtype == np.uint8
    with open(PHOTO, "rb") as stream:
        assert peek_image_size(stream, str(PHOTO)) == (256, 128)
    with pytest.raises(UnreadableImageError, match="junk.jpg"):
        peek_image_size(io.BytesIO(b"junk"), "junk.jpg")
    with pytest.raises(UnreadableImageError, match="cut.png"):
        decode_photo(PHOTO.read_bytes()[:500], "cut.png")


def test_size_mismatch_names_both_files():
    check_same_size((256, 128), (256, 128), "l.png", "p.png")
    with pytest.raises(SizeMismatchError, match=r"l\.png.*256x128.*p\.png.*128x64"):
        check_same_size((256, 128), (128, 64), "l.png", "p.png")


def test_safe_key_rule():
    key = safe_key("frankfurt_000000_000294", "val/frankfurt/frankfurt_000000_000294")
    assert (
        key.startswith("frankfurt_000000_000294-")
        and len(key) == len("frankfurt_000000_000294") + 11
    )
    assert key == safe_key("frankfurt_000000_000294", "val/frankfurt/frankfurt_000000_000294")
    hostile = [
        "../../etc/passwd",
        "a.b.c",
        "a/b",
        "a_b",
        ".hidden",
        "-rf",
        "",
        "x" * 300,
        "ünï cødé",
    ]
    keys = [safe_key(name) for name in hostile]
    assert all(is_safe_key(k) and "." not in k and "/" not in k and len(k) <= 75 for k in keys)
    assert len(set(keys)) == len(hostile)  # names that sanitise alike stay apart
    assert safe_key("x", "dir1/x") != safe_key("x", "dir2/x")
    assert safe_key("../../etc/passwd").startswith("etc_passwd-")
