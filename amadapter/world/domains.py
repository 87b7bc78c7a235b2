"""Appearance domains of the world: day, night and fog, each a distribution over styles.

The default world (no domain) draws every class colour uniformly from the RGB cube, so
no colour means any class and a segmenter must read geometry alone. A domain instead
ties each class to a colour range, as a real camera's domain does (a day sky is blue, a
night sky black, a fog sky grey), so a segmenter trained in one domain learns colour
cues that fail in another: the setting of a team with labels from one domain and
footage from another (``bench.downstream``).

A domain style draws, per style seed:

- one brightness factor for the whole scene (``light``: sun, dusk, street lighting);
- each class's colour: the domain's centre for the class, times the brightness, plus a
  uniform jitter of ``spread`` RGB units per channel;
- a fog share (``haze``) blending every colour towards the domain's haze colour, and
  the texture amplitude shrunk by the same share (fog washes out detail);
- texture kinds, periods, tints, shading and noise as the default world draws them.

Night is not day darkened: the sky is the darkest region instead of the brightest,
lights and signs glow, and vehicles lose their paint, so a global colour transform
(histogram matching, Fourier amplitude swaps) cannot map one onto the other. Fog keeps
day's hues under a grey veil, which such transforms largely undo.

Layouts are shared across domains; a domain style of seed s comes from its own random
stream (``[s, 1, 100 + the domain's position in DOMAINS]``), unrelated to the default
world's style s, so the default world's bytes stay what they were. World v2 takes its
per-instance palette from the same class ranges (``amadapter.world.v2``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amadapter.io.labels import NUM_CLASSES
from amadapter.world.v1 import _NOISE_GRID, Style

_STREAM_BASE = 100  # domain streams [seed, 1 or 2, 100 + i]: apart from v1's [seed, 1] and v2's [seed, 2]

# Mean RGB per train ID in daylight (road .. bicycle, CLASS_NAMES order).
_DAY = (
    (128, 128, 132), (178, 168, 160), (142, 110, 95), (162, 152, 130), (122, 110, 90),
    (95, 95, 100), (205, 170, 40), (215, 190, 45), (70, 122, 45), (152, 162, 92),
    (130, 180, 235), (185, 60, 60), (205, 85, 60), (45, 65, 155), (62, 92, 82),
    (205, 142, 45), (122, 82, 122), (112, 50, 152), (142, 42, 92),
)  # fmt: skip
# At night: dark ground and sky, glowing lights, reflective signs, lit bus windows.
_NIGHT = (
    (38, 36, 48), (58, 52, 58), (48, 42, 64), (54, 52, 58), (42, 40, 42),
    (32, 32, 36), (250, 222, 140), (175, 175, 142), (22, 36, 26), (38, 42, 32),
    (10, 12, 36), (72, 42, 46), (84, 48, 42), (28, 32, 72), (32, 42, 40),
    (118, 96, 52), (62, 46, 62), (52, 32, 74), (64, 26, 46),
)  # fmt: skip


@dataclass(frozen=True)
class Domain:
    """The style distribution of one domain (colours in RGB units)."""

    name: str
    centres: np.ndarray  # (19, 3) mean colour of each class
    spread: float  # per-channel uniform jitter of a class colour around its centre
    light: tuple[float, float]  # range of the scene's brightness factor
    haze: tuple[float, float]  # range of the fog share
    haze_colour: tuple[float, float, float]  # what fog blends towards (v2: the horizon's colour)
    texture_amplitude: tuple[float, float]  # range of texture amplitude before fog


DOMAINS: dict[str, Domain] = {
    "day": Domain("day", np.array(_DAY, np.float32), 30.0, (0.85, 1.15), (0.0, 0.05),
                  (200.0, 212.0, 228.0), (6.0, 22.0)),  # fmt: skip
    "night": Domain("night", np.array(_NIGHT, np.float32), 16.0, (0.8, 1.2), (0.0, 0.05),
                    (34.0, 34.0, 52.0), (3.0, 10.0)),  # fmt: skip
    "fog": Domain("fog", np.array(_DAY, np.float32), 30.0, (0.9, 1.1), (0.45, 0.7),
                  (198.0, 200.0, 204.0), (6.0, 22.0)),  # fmt: skip
}
DOMAIN_NAMES = tuple(DOMAINS)


def check_domain(name: str | None) -> str | None:
    """``name`` if it is a domain (or None: the default world); else ``ValueError``."""
    if name is not None and name not in DOMAINS:
        raise ValueError(f"unknown world domain {name!r}; choose one of {DOMAIN_NAMES}")
    return name


def domain_rng(style_seed: int, name: str, world_stream: int = 1) -> np.random.Generator:
    """Domain ``name``'s stream of style ``style_seed``: ``world_stream`` 1 for the v1 style
    (also v2's per-class base), 2 for v2's per-instance palette."""
    return np.random.default_rng([int(style_seed), world_stream, _STREAM_BASE + DOMAIN_NAMES.index(name)])


@dataclass(frozen=True)
class SceneLight:
    """What one domain style draws for the whole scene."""

    brightness: float
    fog: float


def scene_light(rng: np.random.Generator, domain: Domain) -> SceneLight:
    return SceneLight(float(rng.uniform(*domain.light)), float(rng.uniform(*domain.haze)))


def class_colour(rng: np.random.Generator, domain: Domain, cls: int, light: SceneLight) -> np.ndarray:
    """One draw of class ``cls``'s colour in this scene's light, fog applied, (3,) float32."""
    colour = domain.centres[cls] * light.brightness + rng.uniform(-domain.spread, domain.spread, 3)
    colour = colour * (1.0 - light.fog) + np.asarray(domain.haze_colour) * light.fog
    return np.clip(colour, 0.0, 255.0).astype(np.float32)


def domain_style(style_seed: int, name: str) -> Style:
    """Style ``style_seed`` of domain ``name``: a v1 ``Style``, so ``world.render`` paints it."""
    domain = DOMAINS[check_domain(name)]
    rng = domain_rng(style_seed, name)
    light = scene_light(rng, domain)
    colors = np.stack([class_colour(rng, domain, c, light) for c in range(NUM_CLASSES)])
    tint = rng.uniform(0.6, 1.0, size=(NUM_CLASSES, 3)) * rng.choice([-1.0, 1.0], size=(NUM_CLASSES, 1))
    amplitude = rng.uniform(*domain.texture_amplitude, size=NUM_CLASSES) * (1.0 - light.fog)
    return Style(
        seed=int(style_seed),
        colors=colors,
        texture_kind=rng.integers(0, 4, size=NUM_CLASSES),
        texture_period=rng.uniform(0.12, 0.3, size=NUM_CLASSES).astype(np.float32),
        texture_amplitude=amplitude.astype(np.float32),
        texture_tint=tint.astype(np.float32),
        shading=rng.uniform(-0.35, 0.35, size=NUM_CLASSES).astype(np.float32),
        noise=rng.standard_normal((2, *_NOISE_GRID)).astype(np.float32),
    )
