"""Training a downstream segmenter on the augment job's shards, optionally mixed with real frames.

    frames = functools.partial(storage.training_frames.frame_loader, root, "cityscapes", "train")
    result = train_segmenter("out/augment/*.tar", RealFrames(frames, (64, 128)), size=(64, 128))

Shards are streamed with ``amadapter.data.shards`` (labels decoded as uint8 train IDs)
through a torch ``DataLoader`` with several workers; each worker reads its own shards and
its own share of the real frames, and the two streams are interleaved one sample from
each in turn, so an epoch is the union of both sets. Real frames come through a
``load_frames()`` factory the caller supplies (``jobs.train_segmenter`` reads dataset roots
with ``storage.training_frames``), so this module opens no file itself; a frame that
fails with an ``InputError`` is skipped with its named error. A real frame may pass
through an image transform first (``real_transform``: photometric jitter or a domain
adaptation such as ``bench.downstream``'s baselines), drawn from a generator seeded by
(run seed, worker, epoch), so a run is repeatable with any worker count's own streams.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from amadapter.data import shards
from amadapter.io.errors import InputError
from amadapter.io.resize import resize_pair
from amadapter.training.segmenters import build_segmenter, default_lr, save_segmenter, segmenter_loss

LOG = logging.getLogger("train_segmenter")
SYNTHETIC, REAL = 0, 1  # the source tag each sample carries
FrameLoader = Callable[[], tuple[Callable[[int], tuple[np.ndarray, np.ndarray]], int]]
ImageTransform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class SyntheticSamples(IterableDataset):
    """The shards' (image, label) pairs; split across DataLoader workers by shard."""

    def __init__(self, pattern: str, size: tuple[int, int] | None, shuffle: int, seed: int):
        self.pattern, self.size, self.shuffle, self.seed = pattern, size, shuffle, seed

    def __iter__(self):
        for image, label in shards(self.pattern, shuffle=self.shuffle, seed=self.seed):
            yield (*resize_pair(image, label, self.size), SYNTHETIC)


class RealFrames(IterableDataset):
    """Frames from ``load_frames() -> (load_frame, count)``; worker w of n reads frames w,
    w+n, ...; each photo through ``transform(image, rng)`` when one is given."""

    def __init__(self, load_frames: FrameLoader, size: tuple[int, int], transform: ImageTransform | None = None,
                 seed: int = 0):  # fmt: skip
        self.load_frames, self.size, self.transform, self.seed = load_frames, size, transform, seed
        self._epoch = 0  # per worker copy: each pass over the frames draws new transforms

    def __iter__(self):
        load_frame, count = self.load_frames()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = np.random.default_rng([self.seed, worker, self._epoch])
        self._epoch += 1
        for index in range(worker, count, workers):
            try:
                photo, ids = load_frame(index)
            except InputError as error:
                LOG.warning("skipped: %s", error)
                continue
            photo, ids = resize_pair(photo, ids, self.size)
            if self.transform is not None:
                photo = self.transform(photo, rng)
            yield photo, ids, REAL


class Interleaved(IterableDataset):
    """One sample from each source in turn, until every source is exhausted."""

    def __init__(self, *sources: IterableDataset):
        self.sources = sources

    def __iter__(self):
        iterators = [iter(s) for s in self.sources]
        while iterators:
            for it in list(iterators):
                try:
                    yield next(it)
                except StopIteration:
                    iterators.remove(it)


def train_segmenter(
    shard_pattern: str | None,
    real: RealFrames | None = None,
    size: tuple[int, int] | None = None,
    steps: int = 200,
    batch_size: int = 8,
    workers: int = 2,
    lr: float | None = None,
    seed: int = 0,
    out: str | None = None,
    log_every: int = 10,
    arch: str = "small",
    init: str | None = None,
    segformer_config: dict | None = None,
    on_step: Callable[[int, nn.Module], None] | None = None,
) -> dict:
    """Train for ``steps`` steps (cycling over the data); returns the losses, sample counts
    and the model. ``lr`` None: the arch's default (``segmenters.default_lr``).
    ``on_step(step, model)`` runs after every step (e.g. a validation every k steps)."""
    if shard_pattern is None and real is None:
        raise ValueError("give --shards, --real, or both")
    if real is not None and size is None:
        raise ValueError("mixing in real frames needs --size, the common training size")
    sources = []
    if shard_pattern is not None:
        sources.append(SyntheticSamples(shard_pattern, size, shuffle=64, seed=seed))
    if real is not None:
        sources.append(real)
    loader = DataLoader(
        Interleaved(*sources),
        batch_size=batch_size,
        num_workers=workers,
        persistent_workers=workers > 0,  # no new worker processes every epoch
    )
    torch.manual_seed(seed)
    model = build_segmenter(arch, init, segformer_config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=default_lr(arch, init) if lr is None else lr)
    losses: list[float] = []
    seen = {"synthetic": 0, "real": 0}
    began = time.perf_counter()
    while len(losses) < steps:  # epochs until enough steps
        epoch_start = len(losses)
        for images, labels, tags in loader:
            loss = segmenter_loss(model, images, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            seen["synthetic"] += int((tags == SYNTHETIC).sum())
            seen["real"] += int((tags == REAL).sum())
            if len(losses) % log_every == 0 or len(losses) == steps:
                LOG.info("step %d/%d loss %.4f", len(losses), steps, losses[-1])
            if on_step is not None:
                on_step(len(losses), model)
            if len(losses) == steps:
                break
        if len(losses) == epoch_start:
            raise ValueError("no readable samples in the given shards / dataset")
    seconds = time.perf_counter() - began
    if out is not None:
        save_segmenter(model, out)
    return {"losses": losses, "seen": seen, "seconds": seconds, "steps": len(losses), "model": model}
