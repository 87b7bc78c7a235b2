"""A procedural driving world with exact appearance-transfer ground truth.

The layouts, the styles and world v1's renderer are ``amadapter.world.v1`` (its names are
re-exported here); world v2's renderer is ``v2``, the choice between them ``versions``,
the export in the Cityscapes layout ``export``, scene and crop pairs ``crops``, and the
colour metrics ``metrics``.
"""

from amadapter.world.v1 import (  # noqa: F401  (the package's public names)
    BICYCLE, BUILDING, BUS, CAR, FENCE, LIGHT, MOTORCYCLE, PERSON, POLE, RIDER, ROAD, SIDEWALK,
    SIGN, SKY, SPLIT_SEEDS, TERRAIN, TEXTURE_CHECKER, TEXTURE_HSTRIPES, TEXTURE_NOISE,
    TEXTURE_VSTRIPES, TRAIN, TRUCK, VEGETATION, WALL, WORLD_CLASSES, Layout, Part, Style, layout,
    layout_parts, render, scene, split_seeds, style,
)  # fmt: skip
