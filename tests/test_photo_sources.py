"""storage.photo_sources lists the real photos of the three layouts (the real Cityscapes
sample in ../shared/data), and jobs.evaluate.fit_photo crops them to the outputs' aspect
before resizing."""

import numpy as np
import pytest
from PIL import Image

from amadapter.io.errors import EmptyRootError
from jobs.evaluate import fit_photo
from tests.conftest import BDD_ROOT, CITYSCAPES_ROOT
from storage.photo_sources import list_photos


def test_cityscapes_photos_and_a_bdd_root_without_images():
    photos = list_photos(str(CITYSCAPES_ROOT), "cityscapes", "val")
    assert [p.rsplit("/", 1)[1] for p in photos] == ["frankfurt_000000_000294_leftImg8bit.png"]
    with pytest.raises(EmptyRootError, match="no bdd100k photos"):
        list_photos(str(BDD_ROOT), "bdd100k", "val")  # the sample holds masks only


def test_folder_photos_at_any_depth(tmp_path):
    for name in ("a.jpg", "sub/b.jpeg", "sub/deeper/c.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 2)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a photo")
    photos = list_photos(str(tmp_path), "folder")
    assert [p[len(str(tmp_path)) + 1:] for p in photos] == ["a.jpg", "sub/b.jpeg", "sub/deeper/c.png"]


def test_fit_photo_crops_to_the_aspect_then_resizes():
    photo = np.zeros((90, 160, 3), np.uint8)  # 16:9
    photo[:5] = 255  # the bands a 2:1 crop (160x80) removes
    photo[-5:] = 255
    fitted = fit_photo(photo, (40, 80))
    assert fitted.shape == (40, 80, 3) and fitted.max() == 0
