"""Example trainer: a segmenter on the augment job's shards, optionally mixed with real data.

    python -m jobs.train_segmenter --shards 'out/augment/*.tar' --steps 200
    python -m jobs.train_segmenter --shards 'out/augment/*.tar' \\
        --real /data/cityscapes --real-dataset cityscapes --real-split train --size 64x128
    python -m jobs.train_segmenter --arch segformer --init /models/mit-b0 \\
        --shards 'out/augment/*.tar' --size 512x1024 --steps 20000 --out out/segformer

It shows the intended use of the output: shards are streamed with
``amadapter.data.shards`` (labels decoded as uint8 train IDs) through a torch
``DataLoader`` with several workers; each worker reads its own shards and its
own share of the real frames, and the two streams are interleaved one sample
from each in turn. Real frames are read with the project's dataset readers
(``storage.training_frames``: cityscapes, bdd100k or folder layouts, local or
on a bucket); an unreadable frame is skipped with its named error.
The model (``amadapter.training.segmenters``): ``--arch small`` (default), the project's
``SmallSegmenter``, saved as ``--out/segmenter.safetensors``; ``--arch segformer``, a
transformers ``SegformerForSemanticSegmentation`` with the Cityscapes train classes as
``id2label`` and 255 as ignore index, from a local checkpoint (``--init``: e.g. an
ImageNet ``mit-b0`` encoder or a Cityscapes SegFormer) or from a config (default: the
MiT-B0 shape, 3.7 M parameters, random; ``--segformer-config FILE.json`` overrides its
fields), saved into ``--out`` as a transformers checkpoint directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from amadapter.data import shards
from amadapter.io.resize import resize_pair
from amadapter.io.errors import InputError
from amadapter.training.segmenters import (
    ARCHS,
    build_segmenter,
    default_lr,
    save_segmenter,
    segmenter_loss,
)
from pipeline.option_values import parse_finite, parse_size
from storage.dataset_layouts import DATASETS
from storage.training_frames import frame_loader

LOG = logging.getLogger("train_segmenter")
SYNTHETIC, REAL = 0, 1  # the source tag each sample carries


class SyntheticSamples(IterableDataset):
    """The shards' (image, label) pairs; split across DataLoader workers by shard."""

    def __init__(self, pattern: str, size: tuple[int, int] | None, shuffle: int, seed: int):
        self.pattern, self.size, self.shuffle, self.seed = pattern, size, shuffle, seed

    def __iter__(self):
        for image, label in shards(self.pattern, shuffle=self.shuffle, seed=self.seed):
            yield (*resize_pair(image, label, self.size), SYNTHETIC)


class RealFrames(IterableDataset):
    """Frames of a dataset root that have a photo; worker w of n reads frames w, w+n, ..."""

    def __init__(self, root: str, dataset: str, split: str | None, size: tuple[int, int]):
        self.root, self.dataset, self.split, self.size = root, dataset, split, size

    def __iter__(self):
        load_frame, count = frame_loader(self.root, self.dataset, self.split)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for index in range(worker, count, workers):
            try:
                photo, ids = load_frame(index)
            except InputError as error:
                LOG.warning("skipped: %s", error)
                continue
            yield (*resize_pair(photo, ids, self.size), REAL)


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


def train(
    shard_pattern: str | None,
    real: tuple[str, str, str | None] | None = None,
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
) -> dict:
    """Train for ``steps`` steps (cycling over the data); returns the losses, sample counts
    and the model. ``lr`` None: the arch's default (``segmenters.default_lr``)."""
    if shard_pattern is None and real is None:
        raise ValueError("give --shards, --real, or both")
    if real is not None and size is None:
        raise ValueError("mixing in real frames needs --size, the common training size")
    sources = []
    if shard_pattern is not None:
        sources.append(SyntheticSamples(shard_pattern, size, shuffle=64, seed=seed))
    if real is not None:
        sources.append(RealFrames(*real, size))
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
            if len(losses) == steps:
                break
        if len(losses) == epoch_start:
            raise ValueError("no readable samples in the given shards / dataset")
    seconds = time.perf_counter() - began
    if out is not None:
        save_segmenter(model, out)
    return {"losses": losses, "seen": seen, "seconds": seconds, "steps": len(losses), "model": model}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", help="shard glob or brace pattern, e.g. 'out/augment/*.tar'")
    parser.add_argument("--real", help="a real dataset root to mix in")
    parser.add_argument("--real-dataset", default="cityscapes", choices=DATASETS)
    parser.add_argument("--real-split", default=None, help="split of --real (default: train)")
    parser.add_argument(
        "--size", type=parse_size, default=None, help="HxW all samples are resized to"
    )
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--arch", default="small", choices=ARCHS)
    parser.add_argument("--init", help="segformer: a local transformers checkpoint directory to start from")
    parser.add_argument(
        "--segformer-config", help="segformer: JSON file of SegformerConfig fields (default: MiT-B0)"
    )
    parser.add_argument(
        "--lr", type=parse_finite, default=None,
        help="AdamW rate (default: 2e-3 small; segformer 6e-5 with --init, else 1e-3)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads of the training process"
    )
    parser.add_argument("--out", default="out/segmenter", help="where the trained model goes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    real = (args.real, args.real_dataset, args.real_split) if args.real else None
    result = train(
        args.shards,
        real,
        args.size,
        args.steps,
        args.batch_size,
        args.workers,
        args.lr,
        args.seed,
        args.out,
        arch=args.arch,
        init=args.init,
        segformer_config=json.loads(Path(args.segformer_config).read_text()) if args.segformer_config else None,
    )
    print(
        f"trained {result['steps']} steps in {result['seconds']:.1f} s on "
        f"{result['seen']['synthetic']} synthetic + {result['seen']['real']} real samples; "
        f"loss {result['losses'][0]:.3f} -> {result['losses'][-1]:.3f}; weights in {args.out}"
    )
    return result


if __name__ == "__main__":
    main()
