"""The world's versions side by side: v1 (one appearance per class; the default
everywhere) and v2 (per-instance appearance, ``amadapter.world.v2``), each with the
default styles or those of an appearance domain (``amadapter.world.domains``). All
paint the same layouts."""

from __future__ import annotations

import numpy as np

from amadapter import world
from amadapter.world.domains import check_domain, domain_style
from amadapter.world.v2 import render_v2, style_v2

WORLD_VERSIONS = (1, 2)


def check_version(version: int) -> int:
    if version not in WORLD_VERSIONS:
        raise ValueError(f"unknown world version {version!r}; choose one of {WORLD_VERSIONS}")
    return version


def render_scene(scene: world.Layout, style_seed: int, version: int, domain: str | None = None) -> np.ndarray:
    """The photo of a layout in style ``style_seed`` of world ``version`` (and ``domain``:
    None for the default styles), (H, W, 3) uint8."""
    check_domain(domain)
    if check_version(version) == 1:
        return world.render(scene.ids, world.style(style_seed) if domain is None else domain_style(style_seed, domain))
    return render_v2(scene, style_v2(style_seed, domain))
