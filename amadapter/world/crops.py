"""Crop pairs: the paper's stage-2 setting, with exact ground truth per instance.

One scene (world v2 unless told) is rendered at ``SCENE_SCALE`` x the model size; two windows of it
(each ``s`` x the model size, ``s`` uniform in [1, ``SCENE_SCALE``], at a random
offset; the exemplar's window mirrored with probability 1/2) are resized to the
model size: images by area averaging (PIL BOX), label and instance maps by
nearest pixel centre. The exemplar is one window, the target the other, and the
ground truth is the target window of the same render, so an instance has the
same appearance in both (its instance index is shared). Pair ``i`` of a split
uses layout and style seed ``split_seeds(split, n)[i]`` and draws its windows
from the stream ``[seed, 3]``; training (``amadapter.training.data.WorldCropPairs``)
passes its own generator instead, so one scene yields ever new window pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from amadapter.world import layout_parts, split_seeds
from amadapter.world.versions import render_scene

SCENE_SCALE = 1.5


@dataclass(frozen=True)
class Window:
    """A region of the scene (pixels, before resizing) and whether it is mirrored."""

    top: int
    left: int
    height: int
    width: int
    flip: bool


def random_window(rng: np.random.Generator, scene: tuple[int, int], size: tuple[int, int], flip: bool) -> Window:
    scale = rng.uniform(1.0, SCENE_SCALE)
    height = min(int(round(size[0] * scale)), scene[0])
    width = min(int(round(size[1] * scale)), scene[1])
    top = int(rng.integers(0, scene[0] - height + 1))
    left = int(rng.integers(0, scene[1] - width + 1))
    return Window(top, left, height, width, bool(flip and rng.random() < 0.5))


def cut(array: np.ndarray, window: Window, size: tuple[int, int]) -> np.ndarray:
    """The window of a map (2-D, nearest) or an RGB image (3-D, area average), at ``size``."""
    region = array[window.top:window.top + window.height, window.left:window.left + window.width]
    if window.flip:
        region = region[:, ::-1]
    if region.shape[:2] == tuple(size):
        return np.ascontiguousarray(region)
    if region.ndim == 3:
        return np.asarray(Image.fromarray(np.ascontiguousarray(region)).resize(size[::-1], Image.BOX))
    rows = ((np.arange(size[0]) + 0.5) * region.shape[0] / size[0]).astype(int)
    cols = ((np.arange(size[1]) + 0.5) * region.shape[1] / size[1]).astype(int)
    return np.ascontiguousarray(region[rows][:, cols])


def crop_pair(seed: int, size: tuple[int, int] = (64, 128), version: int = 2,
              windows: np.random.Generator | None = None, domain: str | None = None) -> dict[str, np.ndarray]:
    """Target and exemplar windows of one scene: labels, instances, images (truth = target image).

    ``windows``: the generator the two windows are drawn from (default: the scene's own
    stream ``[seed, 3]``, which the benchmark's fixed pairs use)."""
    scene_size = (int(round(size[0] * SCENE_SCALE)), int(round(size[1] * SCENE_SCALE)))
    scene = layout_parts(seed, *scene_size)
    photo = render_scene(scene, seed, version, domain)
    rng = windows if windows is not None else np.random.default_rng([int(seed), 3])
    target, exemplar = random_window(rng, scene_size, size, False), random_window(rng, scene_size, size, True)
    return {
        "target_labels": cut(scene.ids, target, size),
        "target_instances": cut(scene.instances, target, size),
        "truth": cut(photo, target, size),
        "exemplar_labels": cut(scene.ids, exemplar, size),
        "exemplar_instances": cut(scene.instances, exemplar, size),
        "exemplar_image": cut(photo, exemplar, size),
        "seed": np.int64(seed),
    }


def crop_pairs(split: str, n: int, size: tuple[int, int] = (64, 128), version: int = 2) -> dict[str, np.ndarray]:
    """``n`` crop pairs of ``split``, stacked: (n, H, W[, 3]) per field."""
    pairs = [crop_pair(s, size, version) for s in split_seeds(split, n)]
    return {key: np.stack([p[key] for p in pairs]) for key in pairs[0]}
