"""The scene suite: world test layouts, each with exemplars the product's own retrieval picks.

The pool is a set of world frames (train seeds, each frame in its own style) exported
in the Cityscapes layout and indexed with ``prepare_index``, exactly as the augment
job does; each target takes the best match (one exemplar) or the best match plus the
coverage exemplar of ``--exemplars-per-target 2`` (``amadapter.retrieval.coverage``).
The ground truth paints every target pixel in the style of the exemplar that lends
its class (the first exemplar lends the rest), rendered exactly by the world. A class
no chosen exemplar shows is *untransferable*. Used by ``bench.coverage`` (v1) and
``bench.appearance`` (either world version).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from amadapter import world
from amadapter.retrieval import ExemplarIndex
from amadapter.retrieval.coverage import class_pixels, cover_classes
from amadapter.world.export import export_world
from amadapter.world.metrics import transferable
from amadapter.world.versions import render_scene
from pipeline.exemplar_index import prepare_index
from transforms.retrieve_exemplars import COVERAGE_CANDIDATES

HEIGHT, WIDTH = 64, 128


def scene_suite(n: int, pool_size: int, workdir: Path, split: str = "test", version: int = 1) -> list[dict]:
    """Per target: its layout (with instances), labels and seed, and the ranked pool matches."""
    export_world(workdir, pool_size, "train", HEIGHT, WIDTH, version=version)
    index = ExemplarIndex.load(prepare_index(None, str(workdir), "cityscapes", "train", str(workdir)))
    seeds = list(world.split_seeds(split, n))
    layouts = [world.layout_parts(s, HEIGHT, WIDTH) for s in seeds]
    ranked = index.query([s.ids for s in layouts], COVERAGE_CANDIDATES, target_paths=[None] * n)
    return [{"layout": scene, "labels": scene.ids, "seed": s, "ranked": r, "version": version}
            for scene, s, r in zip(layouts, seeds, ranked)]  # fmt: skip


def chosen_exemplars(case: dict, count: int) -> list[dict]:
    """The exemplars of ``--exemplars-per-target count``: photo, labels, style seed, lent classes."""
    ranked = case["ranked"]
    chosen = []
    for match, lent in cover_classes(ranked[0], ranked, class_pixels(case["labels"]), count):
        style_seed = int(Path(match.label_path).name.split("_")[2])  # world_{layout}_{style}_...
        labels = np.asarray(Image.open(match.label_path.replace("_labelIds", "_labelTrainIds")))
        chosen.append({"photo": np.asarray(Image.open(match.photo_path).convert("RGB")), "labels": labels,
                       "style_seed": style_seed, "lent": lent})  # fmt: skip
    return chosen


def truth_and_transferable(case: dict, chosen: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """The ground truth (each class in its lender's style) and the transferable-pixel mask."""
    labels, version = case["labels"], case["version"]
    truth = render_scene(case["layout"], chosen[0]["style_seed"], version)
    for exemplar in chosen[1:]:
        lent = np.isin(labels, exemplar["lent"])
        truth = np.where(lent[..., None], render_scene(case["layout"], exemplar["style_seed"], version), truth)
    return truth, transferable(labels, np.concatenate([e["labels"].ravel() for e in chosen]))
