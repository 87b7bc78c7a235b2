"""A procedural driving world with exact appearance-transfer ground truth.

Scenes are split into a *layout* (a uint8 map of Cityscapes train IDs, from a
layout seed) and a *style* (one colour, texture and shading per class, from a
style seed). ``render(layout, style)`` paints a layout with a style, pixel by
pixel from (position, class) only, so ``render(target_layout, exemplar_style)``
is exactly the photo an appearance transfer from the exemplar should produce.

Seed ranges (layout and style seeds alike; the two use independent random
streams, so layout seed s and style seed s are unrelated):

    train  0       ..  799_999
    val    800_000 ..  899_999
    test   900_000 ..  999_999

Seeds stay below 10**6 so an exported frame can carry both in a
Cityscapes-shaped name (``world_{layout:06d}_{style:06d}``).

``layout_parts`` gives a layout's instance map too (``Layout``: every pixel in one
``Part``, a single-class piece of one drawn object); world v2 (``amadapter.world.v2``)
paints those instances, v1 (this module's ``render``, the default everywhere) ignores
them. The package ``amadapter.world`` re-exports this module's public names.

Pure numpy and deterministic: same seed and size, same array, on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amadapter.io.labels import CLASS_NAMES, IGNORE_ID, NUM_CLASSES

SPLIT_SEEDS: dict[str, range] = {
    "train": range(0, 800_000),
    "val": range(800_000, 900_000),
    "test": range(900_000, 1_000_000),
}

ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY = range(11)
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = range(11, 19)
assert CLASS_NAMES[SKY] == "sky" and CLASS_NAMES[BICYCLE] == "bicycle"

# Classes the generator is built to produce (every one appears across a few dozen seeds).
WORLD_CLASSES: tuple[int, ...] = (
    ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY,
    PERSON, RIDER, CAR, TRUCK, BUS, MOTORCYCLE, BICYCLE,
)  # fmt: skip

TEXTURE_NOISE, TEXTURE_HSTRIPES, TEXTURE_VSTRIPES, TEXTURE_CHECKER = range(4)
_NOISE_GRID = (6, 12)  # low-frequency noise: a coarse random grid, bilinearly upsampled
_MIN_COLOR_DISTANCE = 55.0  # classes of one style stay distinguishable by mean colour


def split_seeds(split: str, n: int, start: int = 0) -> range:
    """The first ``n`` seeds of ``split`` after ``start``; fails if the range runs out."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLIT_SEEDS)}")
    full = SPLIT_SEEDS[split]
    if start < 0 or start + n > len(full):
        raise ValueError(f"split {split!r} has {len(full)} seeds; asked for {start}..{start + n}")
    return range(full.start + start, full.start + start + n)


# ----------------------------------------------------------------------------- style


@dataclass(frozen=True)
class Style:
    """Per-class appearance. All arrays are indexed by train ID."""

    seed: int
    colors: np.ndarray  # (19, 3) float32, mean RGB of each class (before texture)
    texture_kind: np.ndarray  # (19,) int: TEXTURE_*
    texture_period: np.ndarray  # (19,) float32, stripe/checker period as a fraction of height
    texture_amplitude: np.ndarray  # (19,) float32, RGB units
    texture_tint: np.ndarray  # (19, 3) float32, unit-ish RGB direction of the texture
    shading: np.ndarray  # (19,) float32, brightness slope from top (-) to bottom (+)
    noise: np.ndarray  # (2, *_NOISE_GRID) float32 coarse noise grids, values ~N(0, 1)


def style(style_seed: int) -> Style:
    """The appearance of every class for ``style_seed`` (independent of image size)."""
    rng = np.random.default_rng([int(style_seed), 1])
    colors = np.zeros((NUM_CLASSES, 3), dtype=np.float32)
    for c in range(NUM_CLASSES):
        # Rejection sampling keeps classes apart; the attempt cap keeps it finite.
        for _ in range(200):
            candidate = rng.uniform(20.0, 235.0, size=3)
            if c == 0 or np.min(np.linalg.norm(colors[:c] - candidate, axis=1)) >= _MIN_COLOR_DISTANCE:
                break
        colors[c] = candidate
    tint = rng.uniform(0.6, 1.0, size=(NUM_CLASSES, 3)) * rng.choice([-1.0, 1.0], size=(NUM_CLASSES, 1))
    return Style(
        seed=int(style_seed),
        colors=colors,
        texture_kind=rng.integers(0, 4, size=NUM_CLASSES),
        texture_period=rng.uniform(0.12, 0.3, size=NUM_CLASSES).astype(np.float32),
        texture_amplitude=rng.uniform(6.0, 22.0, size=NUM_CLASSES).astype(np.float32),
        texture_tint=tint.astype(np.float32),
        shading=rng.uniform(-0.35, 0.35, size=NUM_CLASSES).astype(np.float32),
        noise=rng.standard_normal((2, *_NOISE_GRID)).astype(np.float32),
    )


def _upsample(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a small 2-D grid to (height, width), corners aligned."""
    gh, gw = grid.shape
    rows = _interp_matrix(gh, height)
    cols = _interp_matrix(gw, width)
    return rows @ grid @ cols.T


def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    pos = np.linspace(0.0, n_in - 1.0, n_out)
    lo = np.clip(np.floor(pos).astype(int), 0, n_in - 2)
    frac = pos - lo
    m = np.zeros((n_out, n_in), dtype=np.float32)
    m[np.arange(n_out), lo] = 1.0 - frac
    m[np.arange(n_out), lo + 1] = frac
    return m


def render(layout_map: np.ndarray, appearance: Style) -> np.ndarray:
    """Paint a train-ID map with a style: (H, W) uint8 -> (H, W, 3) uint8.

    Each pixel depends only on its position and class, so the same style on two
    layouts gives the same colour, texture and shading wherever the classes
    agree. Ignore pixels (255) are black.
    """
    height, width = layout_map.shape
    ys = (np.arange(height, dtype=np.float32) / max(height - 1, 1))[:, None]
    xs = (np.arange(width, dtype=np.float32) / max(height - 1, 1))[None, :]  # units of height
    noise = [_upsample(g, height, width) for g in appearance.noise]
    image = np.zeros((height, width, 3), dtype=np.float32)
    for c in np.unique(layout_map):
        if c == IGNORE_ID:
            continue
        where = layout_map == c
        yy, xx = np.broadcast_to(ys, (height, width))[where], np.broadcast_to(xs, (height, width))[where]
        phase = 2.0 * np.pi / appearance.texture_period[c]
        kind = appearance.texture_kind[c]
        if kind == TEXTURE_NOISE:
            pattern = noise[c % 2][where]
        elif kind == TEXTURE_HSTRIPES:
            pattern = np.sin(phase * yy)
        elif kind == TEXTURE_VSTRIPES:
            pattern = np.sin(phase * xx)
        else:
            pattern = np.sign(np.sin(phase * yy) * np.sin(phase * xx)) * 0.8
        shade = 1.0 + appearance.shading[c] * (yy - 0.5)
        image[where] = (
            appearance.colors[c] * shade[:, None]
            + (appearance.texture_amplitude[c] * pattern)[:, None] * appearance.texture_tint[c]
        )
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Part:
    """One instance of a layout: a single-class piece of one drawn object (a car, the
    sign on a pole, one facade segment, the left sidewalk). World v2's appearance
    rule reads ``side`` and ``depth``; v1 ignores parts."""

    cls: int
    side: int  # -1 left of the vanishing point, +1 right of it, 0 on the street's axis
    depth: float  # 0 at the horizon .. 1 at the bottom row (how near the object stands)


@dataclass(frozen=True)
class Layout:
    """A label map with its instances: ``instances[y, x]`` indexes ``parts``."""

    ids: np.ndarray  # (H, W) uint8 train IDs
    instances: np.ndarray  # (H, W) int32, every pixel in exactly one part
    parts: tuple[Part, ...]
    horizon: float  # row of the horizon, in pixels


class _Canvas:
    """A train-ID map and an instance map with clipped, float-coordinate drawing primitives.

    Drawing happens inside ``begin(side, depth)`` objects; each class an object paints
    becomes one ``Part`` of it (a pole and its sign are two parts)."""

    def __init__(self, height: int, width: int):
        self.h, self.w = height, width
        self.ids = np.full((height, width), SKY, dtype=np.uint8)
        self.instances = np.zeros((height, width), dtype=np.int32)
        self.parts: list[Part] = [Part(SKY, 0, 0.0)]
        self._object: dict[int, int] = {}  # class -> part index within the current object
        self._where = (0, 0.0)
        self.rows = np.arange(height, dtype=np.float32)[:, None]
        self.cols = np.arange(width, dtype=np.float32)[None, :]

    def begin(self, side: int, depth: float) -> None:
        """Start a new object: what is painted next belongs to new parts."""
        self._object, self._where = {}, (int(side), float(depth))

    def _part(self, cls: int) -> int:
        if cls not in self._object:
            self._object[cls] = len(self.parts)
            self.parts.append(Part(int(cls), *self._where))
        return self._object[cls]

    def paint(self, mask: np.ndarray, cls: int) -> None:
        mask = np.broadcast_to(mask, self.ids.shape)
        self.ids[mask] = cls
        self.instances[mask] = self._part(cls)

    def rect(self, y0: float, y1: float, x0: float, x1: float, cls: int) -> None:
        r0, r1 = max(int(round(y0)), 0), min(int(round(y1)), self.h)
        c0, c1 = max(int(round(x0)), 0), min(int(round(x1)), self.w)
        if r1 <= r0 and 0 <= int(y0) < self.h:
            r0, r1 = int(y0), int(y0) + 1  # never lose a thin object entirely
        if c1 <= c0 and 0 <= int(x0) < self.w:
            c0, c1 = int(x0), int(x0) + 1
        if r1 > r0 and c1 > c0:
            self.ids[r0:r1, c0:c1] = cls
            self.instances[r0:r1, c0:c1] = self._part(cls)

    def ellipse(self, cy: float, cx: float, ry: float, rx: float, cls: int) -> None:
        ry, rx = max(ry, 0.5), max(rx, 0.5)
        r0, r1 = max(int(np.floor(cy - ry)), 0), min(int(np.ceil(cy + ry)) + 1, self.h)
        c0, c1 = max(int(np.floor(cx - rx)), 0), min(int(np.ceil(cx + rx)) + 1, self.w)
        if r1 <= r0 or c1 <= c0:
            return
        dy = (self.rows[r0:r1] - cy) / ry
        dx = (self.cols[:, c0:c1] - cx) / rx
        inside = dy * dy + dx * dx <= 1.0
        if not inside.any() and 0 <= int(cy) < self.h and 0 <= int(cx) < self.w:
            self.ids[int(cy), int(cx)] = cls
            self.instances[int(cy), int(cx)] = self._part(cls)
        self.ids[r0:r1, c0:c1][inside] = cls
        self.instances[r0:r1, c0:c1][inside] = self._part(cls)


@dataclass(frozen=True)
class _Street:
    """Perspective geometry: lines through the vanishing point (vx, horizon)."""

    horizon: float
    vx: float
    bottom: float  # image height
    road_left: float  # x of each boundary line at the bottom row
    road_right: float
    walk_left: float
    walk_right: float

    def x_at(self, bottom_x: float, y: float) -> float:
        t = (y - self.horizon) / (self.bottom - self.horizon)
        return self.vx + t * (bottom_x - self.vx)

    def lane(self, y: float) -> float:
        """Width of one lane (a third of the road) at row y: the scale of objects there."""
        return (self.x_at(self.road_right, y) - self.x_at(self.road_left, y)) / 3.0


def layout(layout_seed: int, height: int = 64, width: int = 128) -> np.ndarray:
    """A driving-scene label map of train IDs, (height, width) uint8."""
    return layout_parts(layout_seed, height, width).ids


def layout_parts(layout_seed: int, height: int = 64, width: int = 128) -> Layout:
    """``layout(...)`` with its instance map. The instance bookkeeping draws no random
    numbers, so the label map is the same as ever."""
    rng = np.random.default_rng([int(layout_seed), 0])
    canvas = _Canvas(height, width)
    street = _street(rng, height, width)
    _ground(canvas, street, rng)
    _facades(canvas, street, rng)
    objects = _street_objects(street, rng, width)
    # Painter's order: far objects first, near ones drawn over them.
    for depth, x, draw in sorted(objects, key=lambda item: item[0]):
        canvas.begin(-1 if x < street.vx else 1, depth)
        draw(canvas)
    return Layout(canvas.ids, canvas.instances, tuple(canvas.parts), street.horizon)


def _street(rng: np.random.Generator, height: int, width: int) -> _Street:
    horizon = height * rng.uniform(0.36, 0.5)
    vx = width * rng.uniform(0.38, 0.62)
    road_left = width * rng.uniform(-0.35, 0.2)
    road_right = width * rng.uniform(0.8, 1.35)
    return _Street(
        horizon=horizon,
        vx=vx,
        bottom=float(height),
        road_left=road_left,
        road_right=road_right,
        walk_left=road_left - width * rng.uniform(0.25, 0.9),
        walk_right=road_right + width * rng.uniform(0.25, 0.9),
    )


def _boundary(street: _Street, bottom_x: float, rows: np.ndarray) -> np.ndarray:
    t = (rows - street.horizon) / (street.bottom - street.horizon)
    return street.vx + t * (bottom_x - street.vx)


def _ground(canvas: _Canvas, street: _Street, rng: np.random.Generator) -> None:
    """Road between its two lines, sidewalk (or terrain) beyond, terrain outside."""
    rows, cols = canvas.rows, canvas.cols
    below = rows > street.horizon
    left_side = SIDEWALK if rng.random() < 0.85 else TERRAIN
    right_side = SIDEWALK if rng.random() < 0.85 else TERRAIN
    pieces = (  # each drawn over the previous ones: (side, where it starts, class)
        (-1, np.ones_like(cols, dtype=bool), TERRAIN),
        (-1, cols >= _boundary(street, street.walk_left, rows), left_side),
        (-1, cols >= _boundary(street, street.road_left, rows), ROAD),
        # The two carriageways are two parts (in v2 they differ, like worn and new asphalt).
        (1, cols >= _boundary(street, (street.road_left + street.road_right) / 2, rows), ROAD),
        (1, cols > _boundary(street, street.road_right, rows), right_side),
        (1, cols > _boundary(street, street.walk_right, rows), TERRAIN),
    )
    for side, start, cls in pieces:
        canvas.begin(side, 1.0)
        canvas.paint(below & start, cls)


def _facades(canvas: _Canvas, street: _Street, rng: np.random.Generator) -> None:
    """Buildings, trees, walls and fences standing on the outer sidewalk lines.

    Column by column: the facade's foot is the outer sidewalk line, its top rises
    above the horizon in proportion to how near the column is (perspective).
    """
    width = canvas.w
    cls = np.full(width, 255, dtype=np.int32)
    height_k = np.zeros(width, dtype=np.float32)
    segment = np.full(width, -1, dtype=np.int32)  # index into `segments` per column
    segments: list[int] = []  # the side of each segment
    for side, outer in ((-1, street.walk_left), (1, street.walk_right)):
        # Segments from the vanishing point outward, each its own kind of facade.
        x = street.vx + side * width * rng.uniform(0.02, 0.06)
        while 0 <= x < width:
            length = width * rng.uniform(0.08, 0.3)
            kind = rng.choice([BUILDING, VEGETATION, TERRAIN], p=[0.62, 0.3, 0.08])
            k = rng.uniform(0.5, 1.9) if kind == BUILDING else rng.uniform(0.3, 1.1)
            x0, x1 = sorted((x, x + side * length))
            span = slice(max(int(round(x0)), 0), min(int(round(x1)), width))
            cls[span], height_k[span], segment[span] = kind, k, len(segments)
            segments.append(side)
            x += side * length
    centre = slice(max(int(street.vx - width * 0.06), 0), min(int(street.vx + width * 0.06) + 1, width))
    far_kind = rng.choice([BUILDING, VEGETATION])
    cols = np.arange(width, dtype=np.float32)
    outer_x = np.where(cols < street.vx, street.walk_left, street.walk_right)
    t = (cols - street.vx) / (outer_x - street.vx)  # depth fraction of the outer line
    foot = street.horizon + np.clip(t, 0.0, None) * (street.bottom - street.horizon)
    top = street.horizon - height_k * (foot - street.horizon)
    # The far end of the street: a low skyline band around the vanishing point.
    far_top = street.horizon - canvas.h * rng.uniform(0.03, 0.12)
    rows = canvas.rows
    far = np.zeros(width, dtype=bool)
    far[centre] = True
    far_mask = far[None, :] & (rows >= far_top) & (rows <= street.horizon + 0.5)
    canvas.begin(0, 0.0)
    canvas.paint(far_mask, far_kind)
    standing = (cls != 255) & (cls != TERRAIN)
    mask = standing[None, :] & (rows >= top[None, :]) & (rows < foot[None, :])
    open_ground = (cls == TERRAIN)[None, :] & (rows > street.horizon) & (rows < foot[None, :])
    # Segments are disjoint column spans, so painting them one by one equals painting all at once.
    depth = np.clip(np.abs(t), 0.0, 1.0)
    for index, side in enumerate(segments):
        columns = segment == index
        if columns.any():
            canvas.begin(side, float(depth[columns].mean()))
            canvas.paint(mask & columns[None, :], int(cls[columns][0]))
    for index, side in enumerate(segments):
        columns = segment == index
        if columns.any() and cls[columns][0] == TERRAIN:
            canvas.begin(side, float(depth[columns].mean()))
            canvas.paint(open_ground & columns[None, :], TERRAIN)
    # A wall or fence in front of some facades, as tall as a fraction of a storey.
    for side in (-1, 1):
        if rng.random() < 0.45:
            barrier = WALL if rng.random() < 0.5 else FENCE
            on_side = (cols < street.vx) if side < 0 else (cols > street.vx)
            lo, hi = sorted(rng.uniform(0.0, 1.0, size=2))
            near = on_side & (np.abs(t) >= lo) & (np.abs(t) <= max(hi, lo + 0.2))
            fence_top = foot - rng.uniform(0.15, 0.35) * (foot - street.horizon)
            band = near[None, :] & (rows >= fence_top[None, :]) & (rows < foot[None, :])
            canvas.begin(side, float(np.clip(np.abs(t[near]), 0.0, 1.0).mean()) if near.any() else 1.0)
            canvas.paint(band, barrier)


def _street_objects(street: _Street, rng: np.random.Generator, width: int):
    """(depth, x, draw) triples for poles, signs, lights, vehicles and people."""
    objects = []
    span = street.bottom - street.horizon

    def row_at(depth: float) -> float:
        return street.horizon + depth * span

    # Poles on the sidewalks, with a sign, a light, or nothing on top.
    for _ in range(rng.integers(1, 5)):
        depth = rng.uniform(0.15, 1.0)
        side = street.walk_left if rng.random() < 0.5 else street.walk_right
        inner = street.road_left if side == street.walk_left else street.road_right
        y = row_at(depth)
        x = street.x_at(inner + rng.uniform(0.15, 0.6) * (side - inner), y)
        top_kind = rng.choice([SIGN, LIGHT, POLE], p=[0.45, 0.4, 0.15])
        objects.append((depth, x, _pole(y, x, street.lane(y), top_kind, rng)))
    # Vehicles on the road (and sometimes parked at its edge).
    for _ in range(rng.integers(0, 7)):
        depth = rng.uniform(0.08, 1.0)
        y = row_at(depth)
        u = rng.uniform(0.05, 0.95)
        x = street.x_at(street.road_left, y) + u * 3.0 * street.lane(y)
        kind = rng.choice([CAR, TRUCK, BUS, TRAIN], p=[0.66, 0.16, 0.14, 0.04])
        objects.append((depth, x, _vehicle(y, x, street.lane(y), kind, rng)))
    # People on the sidewalks; riders on bicycles or motorcycles near the road edge.
    for _ in range(rng.integers(0, 6)):
        depth = rng.uniform(0.1, 1.0)
        y = row_at(depth)
        left = rng.random() < 0.5
        outer, inner = (street.walk_left, street.road_left) if left else (street.walk_right, street.road_right)
        if rng.random() < 0.65:
            x = street.x_at(inner + rng.uniform(0.1, 0.9) * (outer - inner), y)
            objects.append((depth, x, _person(y, x, street.lane(y), PERSON, rng)))
        else:
            x = street.x_at(inner + rng.uniform(-0.4, 0.2) * (outer - inner), y)
            wheels = BICYCLE if rng.random() < 0.7 else MOTORCYCLE
            objects.append((depth, x, _cyclist(y, x, street.lane(y), wheels, rng)))
    # Parked bicycles, sometimes.
    if rng.random() < 0.3:
        depth = rng.uniform(0.3, 1.0)
        y = row_at(depth)
        x = street.x_at(street.road_left + rng.uniform(0.2, 0.8) * (street.walk_left - street.road_left), y)
        objects.append((depth, x, _bicycle(y, x, street.lane(y), BICYCLE)))
    return objects


def _pole(y: float, x: float, lane: float, top_kind: int, rng: np.random.Generator):
    height = lane * rng.uniform(1.6, 2.6)
    thickness = max(lane * 0.06, 0.8)
    box = lane * rng.uniform(0.2, 0.35)
    round_sign = rng.random() < 0.5

    def draw(canvas: _Canvas) -> None:
        canvas.rect(y - height, y, x - thickness / 2, x + thickness / 2, POLE)
        if top_kind == SIGN:
            if round_sign:
                canvas.ellipse(y - height, x, box * 0.6, box * 0.6, SIGN)
            else:
                canvas.rect(y - height - box * 0.6, y - height + box * 0.6, x - box * 0.7, x + box * 0.7, SIGN)
        elif top_kind == LIGHT:
            canvas.rect(y - height - box * 1.1, y - height + box * 0.3, x - box * 0.3, x + box * 0.3, LIGHT)

    return draw


def _vehicle(y: float, x: float, lane: float, kind: int, rng: np.random.Generator):
    width = lane * {CAR: 0.8, TRUCK: 0.95, BUS: 0.95, TRAIN: 1.0}[kind] * rng.uniform(0.9, 1.1)
    height = width * {CAR: 0.75, TRUCK: 1.15, BUS: 1.2, TRAIN: 1.25}[kind]
    side_view = kind in (BUS, TRAIN, TRUCK) and rng.random() < 0.4
    if side_view:
        width *= rng.uniform(2.0, 3.0)

    def draw(canvas: _Canvas) -> None:
        x0, x1 = x - width / 2, x + width / 2
        if kind == CAR:
            canvas.rect(y - height * 0.55, y, x0, x1, CAR)
            canvas.rect(y - height, y - height * 0.5, x0 + width * 0.15, x1 - width * 0.15, CAR)
        elif kind == TRUCK:
            cab = width * 0.35 if side_view else 0.0
            canvas.rect(y - height, y - height * 0.1, x0 + cab, x1, TRUCK)  # cargo box
            canvas.rect(y - height * 0.7, y, x0, x0 + max(cab, width), TRUCK)
        else:
            canvas.rect(y - height, y, x0, x1, kind)
        # Wheels show under the body as part of the vehicle class in Cityscapes.
        canvas.rect(y - height * 0.08, y + height * 0.04, x0 + width * 0.05, x0 + width * 0.25, kind)
        canvas.rect(y - height * 0.08, y + height * 0.04, x1 - width * 0.25, x1 - width * 0.05, kind)

    return draw


def _person(y: float, x: float, lane: float, cls: int, rng: np.random.Generator):
    height = lane * rng.uniform(0.9, 1.2)

    def draw(canvas: _Canvas) -> None:
        body = height * 0.14
        canvas.rect(y - height * 0.45, y, x - body * 0.8, x + body * 0.8, cls)  # legs
        canvas.rect(y - height * 0.82, y - height * 0.42, x - body, x + body, cls)  # torso
        canvas.ellipse(y - height * 0.9, x, height * 0.1, height * 0.08, cls)  # head

    return draw


def _bicycle(y: float, x: float, lane: float, cls: int):
    size = lane * 0.7

    def draw(canvas: _Canvas) -> None:
        wheel = size * 0.22
        canvas.ellipse(y - wheel, x - size * 0.35, wheel, wheel, cls)
        canvas.ellipse(y - wheel, x + size * 0.35, wheel, wheel, cls)
        canvas.rect(y - wheel * 2.2, y - wheel * 1.2, x - size * 0.35, x + size * 0.35, cls)

    return draw


def _cyclist(y: float, x: float, lane: float, wheels: int, rng: np.random.Generator):
    bike = _bicycle(y, x, lane, wheels)
    size = lane * 0.7
    rider = _person(y - size * 0.35, x, lane * 0.8, RIDER, rng)

    def draw(canvas: _Canvas) -> None:
        bike(canvas)
        rider(canvas)

    return draw


def scene(layout_seed: int, style_seed: int, height: int = 64, width: int = 128):
    """(photo, label map) of one world frame: ``render(layout(...), style(...))``."""
    labels = layout(layout_seed, height, width)
    return render(labels, style(style_seed)), labels
