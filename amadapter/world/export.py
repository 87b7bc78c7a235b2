"""Write world scenes to disk in the Cityscapes layout, so dataset readers serve them.

    leftImg8bit/{split}/world/world_{layout:06d}_{style:06d}_leftImg8bit.png
    gtFine/{split}/world/world_{layout:06d}_{style:06d}_gtFine_{labelIds,labelTrainIds,color}.png

Scene i of a split uses layout seed and style seed ``split_seeds(split, ...)[i]``
(independent random streams; see ``amadapter.world``), so a frame's name says
exactly how to regenerate it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cityscapesscripts.helpers.labels import trainId2label
from PIL import Image

from amadapter import world
from amadapter.io.labels import NUM_CLASSES, train_ids_to_colors

CITY = "world"

# train ID -> Cityscapes label ID (the inverse of labels.LABEL_ID_TO_TRAIN_ID on train classes).
TRAIN_ID_TO_LABEL_ID = np.zeros(256, dtype=np.uint8)
for _train_id in range(NUM_CLASSES):
    TRAIN_ID_TO_LABEL_ID[_train_id] = trainId2label[_train_id].id
TRAIN_ID_TO_LABEL_ID[255] = trainId2label[255].id  # 'unlabeled'


def frame_stem(layout_seed: int, style_seed: int) -> str:
    return f"{CITY}_{layout_seed:06d}_{style_seed:06d}"


def export_world(
    out: str | Path, n: int, split: str = "train", height: int = 64, width: int = 128, start: int = 0
) -> list[str]:
    """Render ``n`` scenes of ``split`` (from its ``start``-th seed) under ``out``; returns the stems."""
    out = Path(out)
    image_dir = out / "leftImg8bit" / split / CITY
    label_dir = out / "gtFine" / split / CITY
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    stems = []
    for seed in world.split_seeds(split, n, start):
        photo, train_ids = world.scene(seed, seed, height, width)
        stem = frame_stem(seed, seed)
        Image.fromarray(photo).save(image_dir / f"{stem}_leftImg8bit.png")
        Image.fromarray(train_ids).save(label_dir / f"{stem}_gtFine_labelTrainIds.png")
        Image.fromarray(TRAIN_ID_TO_LABEL_ID[train_ids]).save(label_dir / f"{stem}_gtFine_labelIds.png")
        Image.fromarray(train_ids_to_colors(train_ids)).save(label_dir / f"{stem}_gtFine_color.png")
        stems.append(stem)
    return stems
