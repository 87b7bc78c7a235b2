"""A small segmenter trained on the procedural world, to score layouts of generated images.

A three-level conv U-Net (about 0.5 M parameters) trained with cross-entropy on
random train-split world scenes. World styles give every class a random colour,
so it has to read shape, position and texture, as a layout metric should.
Trained once per configuration and cached as safetensors (default under
``out/``, which git ignores).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from amadapter.labels import IGNORE_ID, NUM_CLASSES
from amadapter.training.data import WorldScenes


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class WorldSegmenter(nn.Module):
    def __init__(self, widths: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        a, b, c = widths
        self.enc1, self.enc2, self.enc3 = _block(3, a), _block(a, b), _block(b, c)
        self.dec2, self.dec1 = _block(c + b, b), _block(b + a, a)
        self.head = nn.Conv2d(a, NUM_CLASSES, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, 19, H, W) logits; H, W multiples of 4."""
        e1 = self.enc1(image)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([F.interpolate(e3, scale_factor=2.0), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0), e1], 1))
        return self.head(d1)


def train_segmenter(steps: int, batch_size: int, size: tuple[int, int], seed: int = 0,
                    lr: float = 2e-3) -> WorldSegmenter:
    torch.manual_seed(seed)
    model = WorldSegmenter()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    source = WorldScenes(*size, batch_size=batch_size, split="train", seed=seed + 12345)
    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:  # cosine decay to zero
            group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * step / steps))
        batch = source(step)
        loss = F.cross_entropy(model(batch["image"]), batch["labels"].long(), ignore_index=IGNORE_ID)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model.eval()


def load_or_train(cache_dir: str | Path, steps: int, batch_size: int, size: tuple[int, int],
                  seed: int = 0, print_fn=print) -> WorldSegmenter:
    """The cached segmenter for this configuration, training it first if missing."""
    config = {"steps": steps, "batch_size": batch_size, "size": list(size), "seed": seed, "version": 1}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"world_segmenter-{digest}.safetensors"
    model = WorldSegmenter()
    if path.is_file():
        model.load_state_dict(load_file(str(path)))
        return model.eval()
    began = time.perf_counter()
    model = train_segmenter(steps, batch_size, size, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    print_fn(f"trained the world segmenter ({steps} steps) in {time.perf_counter() - began:.0f} s -> {path}")
    return model


@torch.no_grad()
def segment(model: WorldSegmenter, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H, W) uint8 train IDs."""
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(images[i:i + batch_size]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        out.append(model(x).argmax(1).to(torch.uint8).numpy())
    return np.concatenate(out)


def mean_iou(predictions: np.ndarray, targets: np.ndarray) -> float:
    """mIoU over the classes present in ``targets``, pixels pooled over all images."""
    valid = targets != IGNORE_ID
    p, t = predictions[valid].astype(np.int64), targets[valid].astype(np.int64)
    confusion = np.bincount(t * NUM_CLASSES + p, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = confusion.sum(1) > 0
    return float(np.mean(tp[present] / union[present]))
