"""jobs.train_segmenter: a few real training steps over real shards, 2 DataLoader workers,
with and without real dataset frames mixed in, for the small segmenter and a tiny SegFormer."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from amadapter import world
from amadapter.data import shards
from amadapter.io.labels import CLASS_NAMES
from amadapter.models.segmentation_models import load_segmentation_model
from jobs.train_segmenter import main
from tests.conftest import CITYSCAPES_ROOT
from tests.test_segmentation_models import TINY_SEGFORMER
from storage.records import Sample
from storage.shards import write_shard

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


def test_segformer_trains_saves_a_checkpoint_and_resumes_from_it(shard_pattern, tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_SEGFORMER))
    result = _train(shard_pattern, tmp_path / "segformer", "--arch", "segformer",
                    "--segformer-config", str(config), "--steps", "4")
    assert result["steps"] == 4 and all(np.isfinite(result["losses"]))
    assert result["seen"] == {"synthetic": 16, "real": 0}
    loaded = load_segmentation_model(tmp_path / "segformer")
    assert loaded.kind == "transformers"
    assert [loaded.module.config.id2label[i] for i in range(19)] == list(CLASS_NAMES)
    assert loaded.module.config.semantic_loss_ignore_index == 255
    assert (tmp_path / "segformer" / "preprocessor_config.json").is_file()
    # --init starts from those weights (a zero rate keeps them: the checkpoint was loaded whole)
    again = _train(shard_pattern, tmp_path / "again", "--arch", "segformer",
                   "--init", str(tmp_path / "segformer"), "--lr", "0", "--steps", "1")
    saved = loaded.module.state_dict()
    for name, tensor in again["model"].state_dict().items():
        if not name.endswith(("running_mean", "running_var", "num_batches_tracked")):  # BN statistics move
            torch.testing.assert_close(tensor, saved[name], msg=name)


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # the block's 4 workers, 2 cores here
def test_readme_webdataset_pipeline_reads_the_shards(shard_pattern):
    """The README's plain-webdataset block, run as printed on these shards: every sample once,
    labels as (H, W) train IDs equal to what the project's reader gives."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "wds.WebDataset(" in b)
    folder = shard_pattern.rsplit("/", 1)[0]
    code = block.replace('"out/augment/aug-{000000..000009}.tar"', repr(f"{folder}/aug-{{000000..000002}}.tar"))
    assert code != block
    namespace: dict = {}
    exec(code, namespace)
    pairs = list(namespace["dataset"])
    expected = list(shards(shard_pattern))
    assert len(pairs) == len(expected) == 12
    assert all(image.shape == (3, *SIZE) and label.shape == SIZE for image, label in pairs)
    assert sorted(label.numpy().astype(np.uint8).tobytes() for _, label in pairs) == sorted(
        label.tobytes() for _, label in expected
    )
