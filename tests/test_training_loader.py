"""The training DataLoader: a (seed, step, rank) gives the same micro-batch with 0 and
2 worker processes, ranks and micro-steps split the global batch, and the loss log
reports the data-wait share."""

import json

import pytest
import torch

from amadapter.training.data import FrameCropPairs, WorldScenes
from amadapter.training.loader import Shard, micro_batches
from amadapter.training.loop import LOG_FILE, PhaseOptions
from amadapter.training.stage1 import Stage1Options, train_structure
from amadapter.pipelines.model_factory import build_pipeline
from storage.training_frames import frame_loader

from conftest import CITYSCAPES_ROOT


def _batches(source, shard, start, end, workers):
    return list(micro_batches(source, shard, start, end, workers=workers))


def _same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("rank", [0, 1])
def test_same_seed_step_rank_same_batch_with_0_and_2_workers_on_real_frames(rank):
    load_frame, count = frame_loader(str(CITYSCAPES_ROOT), "cityscapes", "val")  # real PNG decoding
    source = FrameCropPairs(load_frame, count, 32, 64, batch_size=4, seed=3)
    shard = Shard(rank=rank, world_size=2)
    inline, workers = _batches(source, shard, 5, 8, 0), _batches(source, shard, 5, 8, 2)
    assert len(inline) == len(workers) == 3
    for step, (a, b) in enumerate(zip(inline, workers), start=5):
        _same(a, b)
        _same(a, source.batch(step, range(2 * rank, 2 * rank + 2)))
    assert not torch.equal(inline[0]["image"], inline[1]["image"])  # steps differ


def test_ranks_and_micro_steps_split_the_global_batch():
    source = WorldScenes(32, 64, batch_size=8, seed=2)
    whole = source(4)
    parts = [b for rank in range(2) for b in _batches(source, Shard(rank, 2, accumulation=2), 4, 5, 0)]
    assert [p["image"].shape[0] for p in parts] == [2, 2, 2, 2]
    _same(whole, {k: torch.cat([p[k] for p in parts]) for k in whole})
    with pytest.raises(ValueError, match="multiple of processes x accumulation"):
        micro_batches(source, Shard(0, 3), 0, 1)


def test_loss_log_reports_the_data_wait_share(tmp_path):
    pipe = build_pipeline("tiny", seed=0)
    options = Stage1Options(unet=PhaseOptions(steps=4, lr=1e-3, log_every=2, checkpoint_every=100,
                                              loader_workers=2))
    train_structure(pipe, WorldScenes(32, 64, batch_size=2, seed=3), tmp_path, options, print_fn=lambda _: None)
    rows = [json.loads(line) for line in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    assert all(0.0 <= r["data_wait_share"] < 1.0 for r in rows)
