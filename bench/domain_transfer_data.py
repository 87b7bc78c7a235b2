"""The data of the domain-transfer benchmark (``bench.downstream``): labelled photos of
domain A, unlabelled photos of domain B, domain-B val and test sets, and ideal renders.

All world v2 (per-instance appearance: the bundled model's world) at the bundled
model's size, layouts shared across domains (``amadapter.world.domains``):

- the real set: R day photos with labels, train-split seeds 0..R-1, exported in the
  Cityscapes layout (what the team labelled);
- the pool: B night photos of other train-split layouts and styles (seeds from
  ``POOL_START``), exported in the Cityscapes layout so the ``real_job_true`` arm can
  read their true labels; every other arm ignores them (``--pool-labels-from``);
- val and test: night photos of the val and test splits (unseen layouts and styles),
  generated in memory; day val photos too (``eval_set(..., DOMAIN_A)``), on which the
  segmenter's training is judged converged in the domain it learns from.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import numpy as np

from amadapter import world
from amadapter.world.export import export_world
from amadapter.world.versions import render_scene
from bench.shard_samples import read_samples
from storage.records import Sample
from storage.shards import write_shard

DOMAIN_A, DOMAIN_B = "day", "night"
VERSION = 2
SIZE = (64, 128)  # the bundled model's trained size
POOL_START = 100_000  # the pool's first train-split seed: apart from any real set's 0..R-1
SHARD_SIZE = 32
FRAME = re.compile(r"world_(\d{6})_(\d{6})_")  # an exported frame's layout and style seeds


def export_once(root: Path, n: int, split: str, domain: str, start: int = 0) -> Path:
    """``n`` frames of ``split`` in ``domain``, Cityscapes layout, under ``root`` (kept once
    finished: the ``done`` marker is written last)."""
    if not (root / "done").is_file():
        export_world(root, n, split, *SIZE, start=start, version=VERSION, domain=domain)
        (root / "done").write_text(f"{n} {split} {domain} frames\n")
    return root


def real_set(cache: Path, count: int) -> Path:
    return export_once(cache / f"real-{DOMAIN_A}-{count}", count, "train", DOMAIN_A)


def pool(cache: Path, count: int) -> Path:
    return export_once(cache / f"pool-{DOMAIN_B}-{count}", count, "train", DOMAIN_B, start=POOL_START)


@functools.lru_cache(maxsize=4)
def eval_set(split: str, n: int, domain: str = DOMAIN_B) -> tuple[np.ndarray, np.ndarray]:
    """(photos, labels) of the first ``n`` scenes of ``split`` (val or test) in ``domain``."""
    scenes = [(s, world.layout_parts(s, *SIZE)) for s in world.split_seeds(split, n)]
    photos = np.stack([render_scene(scene, s, VERSION, domain) for s, scene in scenes])
    return photos, np.stack([scene.ids for _, scene in scenes])


def pool_photo_paths(pool_root: Path) -> list[str]:
    return sorted(str(p) for p in (pool_root / "leftImg8bit" / "train").rglob("*_leftImg8bit.png"))


def write_ideal_shards(job_output: Path, output: Path) -> str:
    """For each sample of the job's output, the world render of its target layout in the
    style of the exemplar the job retrieved for it (what perfect synthesis would give),
    with the same key and label, as PNG shards. Returns their pattern."""
    if not (output / "done").is_file():
        samples = []
        for key, (_, label, meta) in sorted(read_samples(str(job_output / "aug-*.tar")).items()):
            layout_seed = int(FRAME.search(os.path.basename(meta["source"])).group(1))
            style_seed = int(FRAME.search(os.path.basename(meta["exemplar"]["photo"])).group(2))
            image = render_scene(world.layout_parts(layout_seed, *SIZE), style_seed, VERSION, DOMAIN_B)
            samples.append(Sample(key, image, label, {"source": meta["source"]}))
        for index in range(0, len(samples), SHARD_SIZE):
            write_shard(str(output), "ideal", index // SHARD_SIZE, samples[index : index + SHARD_SIZE],
                        image_format="png")  # fmt: skip
        (output / "done").write_text(f"{len(samples)} samples\n")
    return str(output / "ideal-*.tar")
