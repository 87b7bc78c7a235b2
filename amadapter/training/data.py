"""Batch sources for the two training stages.

A source gives the rows of a step's *global* batch (the batch of one optimizer
step over all processes and accumulation micro-steps): ``sample(step, row)``
depends only on (source seed, step, row). So any split of a step's rows over
processes, loader workers or micro-batches sees the same rows, and a resumed run
sees exactly the batches it would have seen without the interruption; no
iterator state has to be checkpointed. ``source.batch(step, rows)`` collates some
rows, ``source(step)`` the whole global batch; ``amadapter.training.loader``
feeds a rank's rows through a ``DataLoader``.

Batches are dicts of CPU tensors:

- stage 1 (``WorldScenes``, ``FrameCrops``): ``image`` (B, 3, H, W) float32 in
  [-1, 1] and ``labels`` (B, H, W) uint8 train IDs;
- stage 2 (``WorldPairs``, ``WorldCropPairs``, ``FrameCropPairs``, or a
  ``PairMixture`` of them): the target's ``image`` and ``labels`` plus
  ``exemplar_image`` and ``exemplar_labels``, where the exemplar shows the
  target's appearance under another geometry: in the world one style rendered on
  two different layouts (scene pairs) or two windows of one larger scene (crop
  pairs, ``amadapter.world.crops``); in real data two different crops (and flips)
  of one frame.

World sources take the world's ``version`` (``amadapter.world.versions``; 1 by
default, whose rows are what they always were) and appearance ``domain``
(``amadapter.world.domains``; None by default: the default styles).

Real frames come through ``load_frame(index) -> (photo, train_ids)`` supplied by
the caller (the jobs read dataset roots with ``storage.label_sources`` and
``amadapter.io.label_io``), so this module never touches file systems. A frame that
fails to load with an ``InputError`` is skipped, remembered in ``skipped`` (of
the process that met it: each loader worker keeps its own), and the next frame
is used instead; the choice does not depend on that memory, only its cost does.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image

from amadapter import world
from amadapter.io.errors import InputError
from amadapter.world.crops import crop_pair
from amadapter.world.domains import check_domain
from amadapter.world.versions import check_version, render_scene

Frame = tuple[np.ndarray, np.ndarray]  # (H, W, 3) uint8 photo, (H, W) uint8 train IDs
Sample = dict[str, np.ndarray]  # one row: image (H, W, 3) uint8, labels (H, W) uint8, maybe exemplar_*


def to_batch(photos: list[np.ndarray], labels: list[np.ndarray], prefix: str = "") -> dict[str, torch.Tensor]:
    """Stack uint8 photos and label maps into ``{prefix}image`` in [-1, 1] and ``{prefix}labels``."""
    image = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return {f"{prefix}image": image, f"{prefix}labels": torch.from_numpy(np.stack(labels))}


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8: the inverse of ``to_batch``'s images."""
    return np.rint((images.permute(0, 2, 3, 1).numpy() + 1.0) * 127.5).astype(np.uint8)


def collate(samples: list[Sample]) -> dict[str, torch.Tensor]:
    """Rows from ``sample`` -> a batch (see the module docstring)."""
    batch = {}
    for prefix in ("", "exemplar_"):
        if f"{prefix}image" in samples[0]:
            batch.update(to_batch([s[f"{prefix}image"] for s in samples], [s[f"{prefix}labels"] for s in samples],
                                  prefix))
    return batch


def _rng(seed: int, step: int, row: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(step), int(row)])


class RowSource:
    """A batch source whose rows depend only on (seed, step, row); subclasses define ``sample``."""

    batch_size: int
    seed: int

    def sample(self, step: int, row: int) -> Sample:
        raise NotImplementedError

    def batch(self, step: int, rows) -> dict[str, torch.Tensor]:
        return collate([self.sample(step, row) for row in rows])

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        """The whole global batch of ``step``."""
        return self.batch(step, range(self.batch_size))


class _WorldSource(RowSource):
    """Rows of world ``version`` (default ``default_version``) and appearance ``domain``
    (None: the default styles) from the seeds of one split."""

    default_version = 1

    def __init__(self, height: int, width: int, batch_size: int, split: str = "train", seed: int = 0,
                 version: int | None = None, domain: str | None = None):
        self.height, self.width, self.batch_size = height, width, batch_size
        self.seeds = world.SPLIT_SEEDS[split]
        self.seed = seed
        self.version = check_version(self.default_version if version is None else version)
        self.domain = check_domain(domain)


class WorldScenes(_WorldSource):
    """Stage-1 batches of world scenes: random layout and style seeds of one split."""

    def sample(self, step: int, row: int) -> Sample:
        layout_seed, style_seed = _rng(self.seed, step, row).integers(self.seeds.start, self.seeds.stop, 2)
        scene = world.layout_parts(int(layout_seed), self.height, self.width)
        return {"image": render_scene(scene, int(style_seed), self.version, self.domain), "labels": scene.ids}


class WorldPairs(_WorldSource):
    """Stage-2 batches: per row one style rendered on two different layouts.

    The exemplar's photo is then exactly the appearance the target should take
    on, under a different geometry (in world v2 by the style's rule for any
    layout: side of the street and depth order)."""

    def sample(self, step: int, row: int) -> Sample:
        rng = _rng(self.seed, step, row)
        target_seed, exemplar_seed = self._two_distinct(rng)
        style_seed = int(rng.integers(self.seeds.start, self.seeds.stop))
        target, exemplar = (world.layout_parts(int(s), self.height, self.width) for s in (target_seed, exemplar_seed))
        return {"image": render_scene(target, style_seed, self.version, self.domain), "labels": target.ids,
                "exemplar_image": render_scene(exemplar, style_seed, self.version, self.domain), "exemplar_labels": exemplar.ids}

    def _two_distinct(self, rng: np.random.Generator) -> tuple[int, int]:
        first = int(rng.integers(self.seeds.start, self.seeds.stop))
        offset = int(rng.integers(1, len(self.seeds)))
        second = self.seeds.start + (first - self.seeds.start + offset) % len(self.seeds)
        return first, second


class WorldCropPairs(_WorldSource):
    """Stage-2 batches of crop pairs (the paper's pairs): per row one larger scene of a
    random seed of the split and two random windows of it (``amadapter.world.crops``),
    drawn from the row's own stream, so a scene seen twice gives new windows. World v2
    unless told: on v1 a class-only matcher is already exact."""

    default_version = 2

    def sample(self, step: int, row: int) -> Sample:
        rng = _rng(self.seed, step, row)
        pair = crop_pair(int(rng.integers(self.seeds.start, self.seeds.stop)), (self.height, self.width),
                         self.version, windows=rng, domain=self.domain)
        return {"image": pair["truth"], "labels": pair["target_labels"],
                "exemplar_image": pair["exemplar_image"], "exemplar_labels": pair["exemplar_labels"]}


class PairMixture(RowSource):
    """Each row from one of ``sources`` (same batch size), chosen by the row's own draw
    with probabilities ``weights``: e.g. crop and scene pairs in one batch."""

    def __init__(self, sources: list[RowSource], weights: list[float], seed: int = 0):
        if len(sources) != len(weights) or not sources:
            raise ValueError("a mixture needs one weight per source")
        if len({s.batch_size for s in sources}) != 1:
            raise ValueError("the mixed sources must have one batch size")
        self.sources, self.batch_size, self.seed = sources, sources[0].batch_size, seed
        self.cumulative = np.cumsum(weights) / np.sum(weights)

    def sample(self, step: int, row: int) -> Sample:
        draw = np.random.default_rng([int(self.seed), int(step), int(row), 1]).random()  # not the sources' stream
        return self.sources[int(np.searchsorted(self.cumulative, draw, side="right"))].sample(step, row)


class _Frames(RowSource):
    """Random access to real frames with skipping of bad inputs."""

    def __init__(self, load_frame: Callable[[int], Frame], num_frames: int):
        if num_frames <= 0:
            raise ValueError("a frame source needs at least one frame")
        self.load_frame, self.num_frames = load_frame, num_frames
        self.skipped: dict[int, str] = {}

    def pick(self, rng: np.random.Generator) -> Frame:
        """A random usable frame; frames that raise ``InputError`` are skipped for good."""
        index = int(rng.integers(self.num_frames))
        for _ in range(self.num_frames):
            if index not in self.skipped:
                try:
                    return self.load_frame(index)
                except InputError as err:
                    self.skipped[index] = str(err)
            index = (index + 1) % self.num_frames
        raise RuntimeError(f"none of the {self.num_frames} frames could be read; e.g. {next(iter(self.skipped.values()))}")


def _scaled(frame: Frame, height: int, width: int, zoom: float) -> Frame:
    """Resize a frame so a (height, width) crop covers 1/zoom of its shorter fitting side.

    Photo bilinear, labels nearest (labels are never interpolated)."""
    photo, labels = frame
    fit = max(height / photo.shape[0], width / photo.shape[1])
    scale = fit * zoom
    size = (max(width, round(photo.shape[1] * scale)), max(height, round(photo.shape[0] * scale)))
    if size == (photo.shape[1], photo.shape[0]):
        return photo, labels
    photo = np.asarray(Image.fromarray(photo).resize(size, Image.BILINEAR))
    labels = np.asarray(Image.fromarray(labels).resize(size, Image.NEAREST))
    return photo, labels


def _crop(frame: Frame, rng: np.random.Generator, height: int, width: int, flip: bool) -> Frame:
    photo, labels = frame
    top = int(rng.integers(photo.shape[0] - height + 1))
    left = int(rng.integers(photo.shape[1] - width + 1))
    photo, labels = photo[top:top + height, left:left + width], labels[top:top + height, left:left + width]
    if flip and rng.random() < 0.5:
        photo, labels = photo[:, ::-1], labels[:, ::-1]
    return np.ascontiguousarray(photo), np.ascontiguousarray(labels)


class FrameCrops(_Frames):
    """Stage-1 batches of random crops (random zoom in [1, max_zoom], random flip) of real frames."""

    def __init__(self, load_frame, num_frames: int, height: int, width: int, batch_size: int,
                 max_zoom: float = 1.5, seed: int = 0):
        super().__init__(load_frame, num_frames)
        self.height, self.width, self.batch_size, self.max_zoom, self.seed = height, width, batch_size, max_zoom, seed

    def sample(self, step: int, row: int) -> Sample:
        rng = _rng(self.seed, step, row)
        frame = _scaled(self.pick(rng), self.height, self.width, rng.uniform(1.0, self.max_zoom))
        photo, ids = _crop(frame, rng, self.height, self.width, flip=True)
        return {"image": photo, "labels": ids}


class FrameCropPairs(_Frames):
    """Stage-2 batches: two different crops (independent offsets and flips) of one frame.

    The frame is zoomed by at least ``min_zoom`` so the two crops can differ;
    their appearance is the same frame's, so the exemplar carries the right
    appearance under a geometric change."""

    def __init__(self, load_frame, num_frames: int, height: int, width: int, batch_size: int,
                 min_zoom: float = 1.3, max_zoom: float = 1.8, seed: int = 0):
        super().__init__(load_frame, num_frames)
        if min_zoom <= 1.0:
            raise ValueError("min_zoom must exceed 1 so that two crops of a frame can differ")
        self.height, self.width, self.batch_size = height, width, batch_size
        self.min_zoom, self.max_zoom, self.seed = min_zoom, max_zoom, seed

    def sample(self, step: int, row: int) -> Sample:
        rng = _rng(self.seed, step, row)
        frame = _scaled(self.pick(rng), self.height, self.width, rng.uniform(self.min_zoom, self.max_zoom))
        photo, ids = _crop(frame, rng, self.height, self.width, flip=True)
        exemplar_photo, exemplar_ids = _crop(frame, rng, self.height, self.width, flip=True)
        return {"image": photo, "labels": ids, "exemplar_image": exemplar_photo, "exemplar_labels": exemplar_ids}
