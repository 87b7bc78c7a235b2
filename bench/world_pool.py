"""The retrieval benchmark's pool: small maps of procedural world layouts, cached on disk.

    python -m bench.world_pool --pool 1000000      # generate (or extend) the cache, then exit

Generating a world layout (128x256, ``amadapter.world.layout``) takes about a
millisecond, so a pool of 1,000,000 takes about 17 minutes on one core: longer
than the rest of the benchmark. The layouts are kept as what the index stores of
them, their 32x64 small maps (``descriptor.downsample_nearest``; 2,048 bytes
each), in one raw file under ``~/runs/retrieval_pool`` (``AMADAPTER_POOL_CACHE``
overrides it), in train-seed order. A larger pool extends the file; a smaller one
reads its first rows. The seeds are the world's train split (800,000 seeds), then,
for larger pools, seeds from ``EXTRA_SEEDS_START`` on, outside every split, so a
query from the test split is never in the pool. Downsampling a
small map again is the identity, so the index built from the cache is the one
built from the full layouts.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from amadapter import world
from amadapter.retrieval.descriptor import MAP_SHAPE, downsample_nearest

LAYOUT_SIZE = (128, 256)
CACHE_ENV = "AMADAPTER_POOL_CACHE"
DEFAULT_CACHE = Path.home() / "runs" / "retrieval_pool"
GENERATE_CHUNK = 10_000  # layouts per append: a killed generation keeps what it finished
MAP_BYTES = MAP_SHAPE[0] * MAP_SHAPE[1]
EXTRA_SEEDS_START = max(r.stop for r in world.SPLIT_SEEDS.values())  # after every split


def pool_seed(i: int) -> int:
    """The world layout seed of pool entry ``i``."""
    train = world.SPLIT_SEEDS["train"]
    return train.start + i if i < len(train) else EXTRA_SEEDS_START + i - len(train)


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE))


def _files() -> tuple[Path, Path]:
    stem = f"world-pool-{LAYOUT_SIZE[0]}x{LAYOUT_SIZE[1]}-small{MAP_SHAPE[0]}x{MAP_SHAPE[1]}"
    return cache_dir() / f"{stem}.u8", cache_dir() / f"{stem}.json"


def cached_count() -> int:
    data, meta = _files()
    if not meta.exists():
        return 0
    return min(json.loads(meta.read_text())["count"], data.stat().st_size // MAP_BYTES)


def pool_small_maps(n: int, progress: bool = True) -> tuple[np.ndarray, float]:
    """The small maps of pool entries 0..n-1, (n, *MAP_SHAPE) uint8 memory-mapped
    read-only, and the seconds spent generating the ones the cache lacked (0 when none)."""
    data, meta = _files()
    data.parent.mkdir(parents=True, exist_ok=True)
    have = cached_count()
    began = time.perf_counter()
    if have < n:
        with data.open("r+b" if data.exists() else "wb") as out:
            out.truncate(have * MAP_BYTES)  # drop a partial chunk of a killed run
            out.seek(have * MAP_BYTES)
            for start in range(have, n, GENERATE_CHUNK):
                chunk = [pool_seed(i) for i in range(start, min(start + GENERATE_CHUNK, n))]
                maps = np.stack([downsample_nearest(world.layout(s, *LAYOUT_SIZE)) for s in chunk])
                out.write(maps.tobytes())
                out.flush()
                os.fsync(out.fileno())
                meta.write_text(json.dumps({"count": start + len(chunk)}))
                if progress:
                    rate = (start + len(chunk) - have) / (time.perf_counter() - began)
                    print(f"  pool cache: {start + len(chunk)}/{n} layouts ({rate:.0f}/s)",
                          flush=True)  # fmt: skip
    generated_s = time.perf_counter() - began if have < n else 0.0
    maps = np.memmap(data, np.uint8, mode="r", shape=(n, *MAP_SHAPE))
    return maps, generated_s


class PoolReader:
    """Small maps of the cache by entry, read from the file a block at a time: a memory map
    would keep every page read resident in this process (2 GB at 1,000,000 entries)."""

    BLOCK = 4096

    def __init__(self, n: int):
        self._file = _files()[0].open("rb")
        self._n, self._start, self._block = n, -1, np.zeros((0, *MAP_SHAPE), np.uint8)

    def __call__(self, i: int) -> np.ndarray:
        if not self._start <= i < self._start + len(self._block):
            self._start = i - i % self.BLOCK
            rows = min(self.BLOCK, self._n - self._start)
            self._file.seek(self._start * MAP_BYTES)
            data = self._file.read(rows * MAP_BYTES)
            self._block = np.frombuffer(data, np.uint8).reshape(rows, *MAP_SHAPE)
        return self._block[i - self._start]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=int, required=True)
    args = parser.parse_args()
    _, seconds = pool_small_maps(args.pool)
    print(json.dumps({"pool": args.pool, "cache": str(_files()[0]), "generate_s": round(seconds, 1)}))


if __name__ == "__main__":
    main()
