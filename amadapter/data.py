"""Stream (image, label) pairs from the project's WebDataset shards, for trainers.

    from torch.utils.data import DataLoader
    from amadapter.data import shards

    loader = DataLoader(shards("out/aug-*.tar"), batch_size=8, num_workers=4)
    for images, labels in loader:   # uint8 (B, H, W, 3) and uint8 (B, H, W) train IDs
        ...

Shards are split across distributed nodes and then across DataLoader workers,
so every sample is read exactly once per epoch (a worker with no shard left
reads nothing: use at least as many shards as nodes x workers). Labels are
decoded as uint8 train IDs (0..18, 255 = ignore), never as RGB or floats.
"""

from __future__ import annotations

import glob
from typing import Sequence

import webdataset as wds
from webdataset.shardlists import expand_urls

from amadapter.io.sample_format import decode_sample


def shards(
    urls: str | Sequence[str],
    *,
    with_key: bool = False,
    shuffle: int = 0,
    seed: int = 0,
) -> wds.DataPipeline:
    """An ``IterableDataset`` of ``(image, label)`` numpy pairs, or ``(key, image, label)``.

    ``urls``: a list of shard URLs, a brace pattern (``"out/aug-{000000..000009}.tar"``)
    or a local glob (``"out/aug-*.tar"``, expanded and sorted here); anything
    WebDataset can open. ``image`` is (H, W, 3) uint8 RGB, ``label`` (H, W) uint8.
    ``shuffle > 0`` shuffles the shard order (with ``seed``) and the samples
    through a buffer of that many samples; ``0`` keeps the written order.
    """
    stages = [
        wds.SimpleShardList(shard_urls(urls), seed=seed if shuffle else None),
        wds.split_by_node,
        wds.split_by_worker,
        wds.tarfile_to_samples(),
    ]
    if shuffle:
        stages.append(wds.shuffle(shuffle, seed=seed))
    stages.append(wds.map(_with_key if with_key else _pair))
    return wds.DataPipeline(*stages)


def decoded_samples(urls: str | Sequence[str]) -> wds.DataPipeline:
    """``(key, image, label, meta)`` of every sample, in written order, with its provenance
    ``json``: no shuffling and no split across nodes or workers, so one reader sees every
    sample (for evaluation and inspection, not for training)."""
    return wds.DataPipeline(
        wds.SimpleShardList(shard_urls(urls)), wds.tarfile_to_samples(), wds.map(decode_sample)
    )


def shard_urls(urls: str | Sequence[str]) -> list[str]:
    """The shard URLs ``urls`` names: a local glob expanded and sorted (``FileNotFoundError``
    when it matches nothing), a brace pattern expanded, a list as given."""
    if isinstance(urls, str) and "://" not in urls and any(c in urls for c in "*?["):
        found = sorted(glob.glob(urls))
        if not found:
            raise FileNotFoundError(f"no shards match {urls}")
        return found
    return expand_urls(urls) if isinstance(urls, str) else list(urls)


def _pair(sample: dict):
    _, image, label, _ = decode_sample(sample)
    return image, label


def _with_key(sample: dict):
    key, image, label, _ = decode_sample(sample)
    return key, image, label
