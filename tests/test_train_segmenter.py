"""jobs.train_segmenter: a few real training steps over real shards, 2 DataLoader workers,
with and without real dataset frames mixed in."""

import numpy as np
import pytest

from amadapter import world
from jobs.train_segmenter import main
from tests.conftest import CITYSCAPES_ROOT
from transforms.records import Sample
from transforms.shards import write_shard

SIZE = (16, 32)


@pytest.fixture(scope="module")
def shard_pattern(tmp_path_factory):
    """Three shards of world scenes written by the project's shard writer."""
    out = tmp_path_factory.mktemp("shards")
    for shard in range(3):
        samples = []
        for i in range(4):
            seed = world.split_seeds("train", 1, start=4 * shard + i)[0]
            photo, ids = world.scene(seed, seed, *SIZE)
            samples.append(Sample(f"scene-{seed:06d}", photo, ids, {"source": f"world/{seed}"}))
        write_shard(str(out), "aug", shard, samples)
    return str(out / "aug-*.tar")


def _train(shard_pattern, out, *options):
    """Run the job on the shards with 2 workers, 1 thread and batch 4, plus ``options``."""
    common = ["--batch-size", "4", "--workers", "2", "--threads", "1", "--out", str(out)]
    return main(["--shards", shard_pattern, *options, *common])


def test_trains_on_shards_with_two_workers(shard_pattern, tmp_path):
    result = _train(shard_pattern, tmp_path, "--steps", "4")
    assert result["steps"] == 4 and all(np.isfinite(result["losses"]))
    # 12 samples in 3 shards: an epoch is 3 batches; step 4 starts the second epoch.
    assert result["seen"] == {"synthetic": 16, "real": 0}
    assert (tmp_path / "segmenter.safetensors").stat().st_size > 0


def test_mixes_real_cityscapes_frames(shard_pattern, tmp_path):
    result = _train(shard_pattern, tmp_path, "--real", str(CITYSCAPES_ROOT), "--real-split", "val",
                    "--size", "16x32", "--steps", "2")
    assert result["seen"]["real"] >= 1 and result["seen"]["synthetic"] >= 1
