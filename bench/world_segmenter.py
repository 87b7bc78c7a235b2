"""The project's small segmenter (``amadapter.models.segmenter.SmallSegmenter``) trained on
the procedural world, to score the layouts of generated images.

    python -m bench.world_segmenter [--cache out/bench_cache] [--steps 3000] [--world-version 1|2]

trains (or finds) the cached one and prints its path as the last line's JSON: a
``.safetensors`` file that ``jobs.evaluate --segmenter`` / ``--features`` read.

Trained with cross-entropy on random train-split world scenes of one world version
(v2: every instance its own colour). World styles give every class random colours,
so it has to read shape, position and texture, as a layout metric should.
Trained once per configuration and cached as safetensors (default under
``out/``, which git ignores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from amadapter.evaluation.confusion import confusion_matrix
from amadapter.evaluation.confusion import mean_iou as confusion_mean_iou
from amadapter.models.segmenter import SmallSegmenter, images_to_tensor, segmentation_loss
from amadapter.training.data import WorldScenes, to_uint8
from amadapter.world.versions import WORLD_VERSIONS
from pipeline.option_values import parse_size

@dataclass(frozen=True)
class SegmenterShape:
    """The ``SmallSegmenter`` architecture (the default: about 0.12 M parameters)."""

    width: int = 16
    levels: int = 3
    coordinates: bool = False

    def build(self) -> SmallSegmenter:
        return SmallSegmenter(width=self.width, levels=self.levels, coordinates=self.coordinates)

    def cache_fields(self) -> dict:
        """The fields that name a cached segmenter (the default levels and input leave the
        names of segmenters cached before they existed unchanged)."""
        fields = {"width": self.width}
        if (self.levels, self.coordinates) != (3, False):
            fields.update(levels=self.levels, coordinates=self.coordinates)
        return fields


def train_segmenter(steps: int, batch_size: int, size: tuple[int, int], seed: int = 0,
                    lr: float = 2e-3, version: int = 1, shape: SegmenterShape = SegmenterShape()) -> SmallSegmenter:
    torch.manual_seed(seed)
    model = shape.build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    source = WorldScenes(*size, batch_size=batch_size, split="train", seed=seed + 12345, version=version)
    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:  # cosine decay to zero
            group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * step / steps))
        batch = source(step)
        images = (batch["image"] + 1.0) / 2.0  # the segmenter takes [0, 1]
        loss = segmentation_loss(model(images), batch["labels"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model.eval()


def cache_path(cache_dir: str | Path, steps: int, batch_size: int, size: tuple[int, int],
               seed: int = 0, version: int = 1, shape: SegmenterShape = SegmenterShape()) -> Path:
    """Where the segmenter of this configuration is cached."""
    config = {"steps": steps, "batch_size": batch_size, "size": list(size), "seed": seed, **shape.cache_fields()}
    if version != 1:  # v1 segmenters keep the names they were cached under
        config["world_version"] = version
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"world_segmenter-{digest}.safetensors"


def load_or_train(cache_dir: str | Path, steps: int, batch_size: int, size: tuple[int, int],
                  seed: int = 0, print_fn=print, version: int = 1,
                  shape: SegmenterShape = SegmenterShape()) -> SmallSegmenter:
    """The cached segmenter for this configuration, training it first if missing."""
    path = cache_path(cache_dir, steps, batch_size, size, seed, version, shape)
    if path.is_file():
        return SmallSegmenter.from_state_dict(load_file(str(path))).eval()
    began = time.perf_counter()
    model = train_segmenter(steps, batch_size, size, seed, version=version, shape=shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    print_fn(f"trained the world segmenter ({steps} steps) in {time.perf_counter() - began:.0f} s -> {path}")
    return model


@torch.no_grad()
def segment(model: SmallSegmenter, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H, W) uint8 train IDs."""
    out = []
    for i in range(0, len(images), batch_size):
        x = images_to_tensor(torch.from_numpy(images[i:i + batch_size]))
        out.append(model(x).argmax(1).to(torch.uint8).numpy())
    return np.concatenate(out)


def mean_iou(predictions: np.ndarray, targets: np.ndarray) -> float:
    """mIoU over the classes present in ``targets``, pixels pooled over all images."""
    return confusion_mean_iou(confusion_matrix(predictions, targets))


def add_shape_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    default = SegmenterShape()
    parser.add_argument(f"--{prefix}width", type=int, default=default.width, help="SmallSegmenter width")
    parser.add_argument(f"--{prefix}levels", type=int, default=default.levels,
                        help="SmallSegmenter encoder levels (more: a larger receptive field)")
    parser.add_argument(f"--{prefix}coordinates", action="store_true",
                        help="give the segmenter each pixel's position as input")


def shape_from(args: argparse.Namespace, prefix: str = "") -> SegmenterShape:
    prefix = prefix.replace("-", "_")
    return SegmenterShape(*(getattr(args, prefix + name) for name in ("width", "levels", "coordinates")))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default="out/bench_cache")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=parse_size, default=(64, 128))
    parser.add_argument("--world-version", type=int, default=1, choices=WORLD_VERSIONS)
    add_shape_arguments(parser)
    parser.add_argument("--eval-frames", type=int, default=256,
                        help="val-split ground-truth frames its mIoU is reported on (0: none)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: see README on shared machines)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    shape = shape_from(args)
    model = load_or_train(args.cache, args.steps, args.batch, args.size, version=args.world_version, shape=shape)
    result = {"path": str(cache_path(args.cache, args.steps, args.batch, args.size, version=args.world_version,
                                     shape=shape)), "segmenter": model.describe()}  # fmt: skip
    if args.eval_frames:
        val = WorldScenes(*args.size, batch_size=args.eval_frames, split="val", seed=0, version=args.world_version)(0)
        result["val_miou_ground_truth"] = round(mean_iou(segment(model, to_uint8(val["image"])),
                                                         val["labels"].numpy()), 4)
    print(json.dumps({**result, "seconds": round(time.perf_counter() - began, 1)}))


if __name__ == "__main__":
    main()
