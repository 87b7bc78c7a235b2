"""World v2: appearance that varies *within* a class, tied to the scene's geometry.

World v1 gives every class one colour, so a matcher that only knows classes is
already exact there. Here, as in real streets, it is not:

- every instance (``amadapter.world.Part``: a car, a facade segment, the left
  sidewalk) takes its colour from a per-style palette by a rule defined for any
  layout: ``palette[class, side, rank]``, where side is left/right of the
  vanishing point (parts on the street's axis count as left) and rank is the
  part's depth order among the parts of its class on its side (nearest first,
  cycling through ``RANKS`` colours);
- the texture kind of a class differs between the two sides (left and right
  facades differ in colour *and* texture);
- ground and sky fade towards a per-style haze colour near the horizon, so the
  road is lighter far away than near (shading near -> far).

Layouts are v1's (``amadapter.world.layout_parts``), unchanged; styles come from
their own random stream (``[style_seed, 2]``, with v1's texture parameters from
``[style_seed, 1]``), so seed ranges and splits are v1's. Deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amadapter.io.labels import IGNORE_ID, NUM_CLASSES
from amadapter.world.domains import DOMAINS, class_colour, domain_rng, domain_style, scene_light
from amadapter.world.v1 import (
    ROAD, SIDEWALK, SKY, TERRAIN, TEXTURE_HSTRIPES, TEXTURE_NOISE, TEXTURE_VSTRIPES, Layout, Style,
    _upsample, style,
)  # fmt: skip

VERSION = 2
RANKS = 4  # palette colours per (class, side); the depth rank cycles through them
SIDES = 2  # 0: left of the vanishing point (or on the axis), 1: right
_MIN_PALETTE_DISTANCE = 110.0  # instances of one class stay far apart in colour
HAZE_CLASSES = (ROAD, SIDEWALK, TERRAIN, SKY)  # fade towards the haze colour at the horizon
_HAZE_REACH = 0.6  # fraction of the horizon-to-bottom distance over which ground fades


@dataclass(frozen=True)
class StyleV2:
    """Per-instance appearance. ``base`` holds v1's per-class texture parameters."""

    seed: int
    base: Style
    palette: np.ndarray  # (19, SIDES, RANKS, 3) float32 RGB
    texture_kind: np.ndarray  # (19, SIDES) int: TEXTURE_*
    haze: np.ndarray  # (3,) float32, the colour at the horizon


def style_v2(style_seed: int, domain: str | None = None) -> StyleV2:
    """Style ``style_seed`` of world v2; of ``domain`` (``amadapter.world.domains``) when given."""
    if domain is not None:
        return _domain_style_v2(style_seed, domain)
    rng = np.random.default_rng([int(style_seed), 2])
    palette = np.zeros((NUM_CLASSES, SIDES * RANKS, 3), dtype=np.float32)
    for c in range(NUM_CLASSES):
        for k in range(SIDES * RANKS):
            # Rejection sampling keeps a class's instances apart; the attempt cap keeps it finite.
            for _ in range(200):
                candidate = rng.uniform(0.0, 255.0, size=3)
                if k == 0 or np.min(np.linalg.norm(palette[c, :k] - candidate, axis=1)) >= _MIN_PALETTE_DISTANCE:
                    break
            palette[c, k] = candidate
    return StyleV2(
        seed=int(style_seed),
        base=style(style_seed),
        palette=palette.reshape(NUM_CLASSES, SIDES, RANKS, 3),
        texture_kind=_side_kinds(rng),
        haze=rng.uniform(150.0, 255.0, size=3).astype(np.float32),
    )


def _domain_style_v2(style_seed: int, name: str) -> StyleV2:
    """A domain's v2 style: every instance colour one draw from its class's range, the
    horizon's haze the domain's own (its stream: ``[seed, 2, 100 + position]``)."""
    domain = DOMAINS[name]
    rng = domain_rng(style_seed, name, world_stream=2)
    light = scene_light(rng, domain)
    palette = np.stack([[class_colour(rng, domain, c, light) for _ in range(SIDES * RANKS)]
                        for c in range(NUM_CLASSES)])  # fmt: skip
    return StyleV2(
        seed=int(style_seed),
        base=domain_style(style_seed, name),
        palette=palette.reshape(NUM_CLASSES, SIDES, RANKS, 3),
        texture_kind=_side_kinds(rng),
        haze=np.asarray(domain.haze_colour, dtype=np.float32),
    )


def _side_kinds(rng: np.random.Generator) -> np.ndarray:
    """(19, SIDES) texture kinds, the two sides of a class always different."""
    kinds = rng.integers(0, 4, size=(NUM_CLASSES, SIDES))
    kinds[:, 1] = np.where(kinds[:, 1] == kinds[:, 0], (kinds[:, 0] + 1) % 4, kinds[:, 1])
    return kinds


def part_colours(scene: Layout, appearance: StyleV2) -> np.ndarray:
    """(len(parts), 3) base colour of every part, by the (class, side, depth rank) rule.

    Ranks count only the parts visible in the map, so a part hidden behind others
    does not shift the colours of the rest."""
    visible = np.zeros(len(scene.parts), dtype=bool)
    visible[np.unique(scene.instances)] = True
    colours = np.zeros((len(scene.parts), 3), dtype=np.float32)
    groups: dict[tuple[int, int], list[int]] = {}
    for index, part in enumerate(scene.parts):
        if visible[index]:
            groups.setdefault((part.cls, _side_index(part.side)), []).append(index)
    for (cls, side), members in groups.items():
        nearest_first = sorted(members, key=lambda i: (-scene.parts[i].depth, i))
        for rank, index in enumerate(nearest_first):
            colours[index] = appearance.palette[cls, side, rank % RANKS]
    return colours


def _side_index(side: int) -> int:
    return 1 if side > 0 else 0


def render_v2(scene: Layout, appearance: StyleV2) -> np.ndarray:
    """Paint a layout with its instances: (H, W, 3) uint8. Each pixel depends on its
    position, class and instance only. Ignore pixels (255) are black."""
    height, width = scene.ids.shape
    ys = (np.arange(height, dtype=np.float32) / max(height - 1, 1))[:, None]
    xs = (np.arange(width, dtype=np.float32) / max(height - 1, 1))[None, :]  # units of height
    yy, xx = np.broadcast_to(ys, (height, width)), np.broadcast_to(xs, (height, width))
    base = appearance.base
    noise = [_upsample(g, height, width) for g in base.noise]
    side_of = np.array([_side_index(p.side) for p in scene.parts], dtype=np.int64)[scene.instances]
    colour = part_colours(scene, appearance)[scene.instances]
    # Haze: 1 at the horizon, 0 from _HAZE_REACH of the way down (and high in the sky).
    horizon = scene.horizon / max(height - 1, 1)
    distance = np.abs(yy - horizon) / max((1.0 - horizon) * _HAZE_REACH, 1e-6)
    haze = np.clip(1.0 - distance, 0.0, 1.0)[..., None] ** 1.5
    hazy = np.isin(scene.ids, HAZE_CLASSES)[..., None]
    colour = np.where(hazy, colour * (1.0 - haze) + appearance.haze * haze, colour)
    image = np.zeros((height, width, 3), dtype=np.float32)
    for c in np.unique(scene.ids):
        if c == IGNORE_ID:
            continue
        for side in range(SIDES):
            where = (scene.ids == c) & (side_of == side)
            if not where.any():
                continue
            phase = 2.0 * np.pi / base.texture_period[c]
            kind = appearance.texture_kind[c, side]
            if kind == TEXTURE_NOISE:
                pattern = noise[(c + side) % 2][where]
            elif kind == TEXTURE_HSTRIPES:
                pattern = np.sin(phase * yy[where])
            elif kind == TEXTURE_VSTRIPES:
                pattern = np.sin(phase * xx[where])
            else:
                pattern = np.sign(np.sin(phase * yy[where]) * np.sin(phase * xx[where])) * 0.8
            shade = 1.0 + (0.0 if c in HAZE_CLASSES else base.shading[c]) * (yy[where] - 0.5)
            image[where] = colour[where] * shade[:, None] + (base.texture_amplitude[c] * pattern)[:, None] * base.texture_tint[c]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
