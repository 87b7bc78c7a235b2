"""The world's versions side by side: v1 (one appearance per class; the bundled model's
world and the default everywhere) and v2 (per-instance appearance, ``amadapter.world.v2``).
Both paint the same layouts."""

from __future__ import annotations

import numpy as np

from amadapter import world
from amadapter.world.v2 import render_v2, style_v2

WORLD_VERSIONS = (1, 2)


def check_version(version: int) -> int:
    if version not in WORLD_VERSIONS:
        raise ValueError(f"unknown world version {version!r}; choose one of {WORLD_VERSIONS}")
    return version


def render_scene(scene: world.Layout, style_seed: int, version: int) -> np.ndarray:
    """The photo of a layout in style ``style_seed`` of world ``version``, (H, W, 3) uint8."""
    if check_version(version) == 1:
        return world.render(scene.ids, world.style(style_seed))
    return render_v2(scene, style_v2(style_seed))
