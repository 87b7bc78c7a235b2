"""Write world scenes to disk in the Cityscapes layout, so dataset readers serve them.

    leftImg8bit/{split}/world/world_{layout:06d}_{style:06d}_leftImg8bit.png
    gtFine/{split}/world/world_{layout:06d}_{style:06d}_gtFine_{labelIds,labelTrainIds,color}.png

Scene i of a split uses layout seed and style seed ``split_seeds(split, ...)[i]``
(independent random streams; see ``amadapter.world``), so a frame's name says
exactly how to regenerate it. ``domain`` paints the styles of an appearance domain
(``amadapter.world.domains``; the frame names do not say which: the folder's maker
knows). ``version=2`` renders with ``amadapter.world.v2`` and
also writes ``..._gtFine_instanceIds.png`` (Cityscapes convention, 16-bit: label ID
x 1000 + instance number for thing classes, numbered from 0 per class in order of
the layout's parts; the label ID alone for every other pixel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cityscapesscripts.helpers.labels import trainId2label
from PIL import Image

from amadapter import world
from amadapter.io.labels import NUM_CLASSES, train_ids_to_colors
from amadapter.world.domains import check_domain
from amadapter.world.versions import check_version, render_scene

CITY = "world"

# train ID -> Cityscapes label ID (the inverse of labels.LABEL_ID_TO_TRAIN_ID on train classes).
TRAIN_ID_TO_LABEL_ID = np.zeros(256, dtype=np.uint8)
for _train_id in range(NUM_CLASSES):
    TRAIN_ID_TO_LABEL_ID[_train_id] = trainId2label[_train_id].id
TRAIN_ID_TO_LABEL_ID[255] = trainId2label[255].id  # 'unlabeled'
HAS_INSTANCES = np.array([trainId2label[t].hasInstances for t in range(NUM_CLASSES)] + [False] * (256 - NUM_CLASSES))


def frame_stem(layout_seed: int, style_seed: int) -> str:
    return f"{CITY}_{layout_seed:06d}_{style_seed:06d}"


def instance_ids(scene: world.Layout) -> np.ndarray:
    """The Cityscapes ``instanceIds`` map of a layout, (H, W) uint16."""
    label_ids = TRAIN_ID_TO_LABEL_ID[scene.ids].astype(np.int32)
    number = np.zeros(len(scene.parts), dtype=np.int32)  # per part: its number within its class
    count: dict[int, int] = {}
    for index in np.unique(scene.instances):
        cls = scene.parts[index].cls
        number[index], count[cls] = count.get(cls, 0), count.get(cls, 0) + 1
    if number.max(initial=0) >= 1000:
        raise ValueError("a class has 1000 instances or more: the instanceIds convention cannot number them")
    return np.where(HAS_INSTANCES[scene.ids], label_ids * 1000 + number[scene.instances], label_ids).astype(np.uint16)


def export_world(
    out: str | Path, n: int, split: str = "train", height: int = 64, width: int = 128, start: int = 0,
    version: int = 1, domain: str | None = None,
) -> list[str]:
    """Render ``n`` scenes of ``split`` (from its ``start``-th seed) under ``out``; returns the stems."""
    check_version(version)
    check_domain(domain)
    out = Path(out)
    image_dir = out / "leftImg8bit" / split / CITY
    label_dir = out / "gtFine" / split / CITY
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    stems = []
    for seed in world.split_seeds(split, n, start):
        stem = frame_stem(seed, seed)
        scene = world.layout_parts(seed, height, width)
        photo, train_ids = render_scene(scene, seed, version, domain), scene.ids
        if version == 2:
            Image.fromarray(instance_ids(scene)).save(label_dir / f"{stem}_gtFine_instanceIds.png")
        Image.fromarray(photo).save(image_dir / f"{stem}_leftImg8bit.png")
        Image.fromarray(train_ids).save(label_dir / f"{stem}_gtFine_labelTrainIds.png")
        Image.fromarray(TRAIN_ID_TO_LABEL_ID[train_ids]).save(label_dir / f"{stem}_gtFine_labelIds.png")
        Image.fromarray(train_ids_to_colors(train_ids)).save(label_dir / f"{stem}_gtFine_color.png")
        stems.append(stem)
    return stems
