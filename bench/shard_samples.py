"""Every sample of a set of shards, by key: what the benchmarks read back of the job's output."""

from __future__ import annotations

import glob

import webdataset as wds

from amadapter.io.sample_format import decode_sample


def read_samples(pattern: str) -> dict[str, tuple]:
    """key -> (image, label, meta) of every sample of the shards matching ``pattern``."""
    urls = sorted(glob.glob(pattern))
    return {key: rest for key, *rest in map(decode_sample, wds.WebDataset(urls, shardshuffle=False))}
