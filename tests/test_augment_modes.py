"""--mode: the job renders with the learned adapter, the categorical rule or plain augmented
attention; the mode is in each sample's json and in the fingerprint. Real DirectRunner runs
with the tiny checkpoint, tars read back with webdataset."""

import numpy as np
import pytest
import webdataset as wds

from amadapter.io.sample_format import decode_sample
from amadapter.pipelines.model_factory import build_pipeline
from amadapter.world.export import export_world
from jobs.augment import run
from storage.fingerprint import FingerprintMismatchError


def _images(output):
    urls = sorted(str(p) for p in output.glob("aug-*.tar"))
    return {key: (image, meta) for key, image, _, meta in map(decode_sample, wds.WebDataset(urls, shardshuffle=False))}


def test_each_mode_renders_its_own_images_and_records_itself(tmp_path):
    export_world(tmp_path / "world", 6, "val", 16, 32)
    build_pipeline("tiny").save_pretrained(str(tmp_path / "model"))
    argv = ["--runner=DirectRunner", "--labels", str(tmp_path / "world"), "--split", "val",
            "--model", str(tmp_path / "model"), "--steps", "2", "--size", "16x32", "--image-format", "png",
            "--preview-count", "0"]  # fmt: skip
    images = {}
    for mode in ("am_adapter", "categorical", "augmented"):
        run(argv + ["--mode", mode, "--output", str(tmp_path / mode)])
        images[mode] = _images(tmp_path / mode)
        assert len(images[mode]) == 6 and all(meta["mode"] == mode for _, meta in images[mode].values())
    keys = sorted(images["am_adapter"])
    for a, b in (("am_adapter", "categorical"), ("categorical", "augmented")):
        assert any(not np.array_equal(images[a][k][0], images[b][k][0]) for k in keys), (a, b)
    with pytest.raises(FingerprintMismatchError, match="mode"):
        run(argv + ["--mode", "categorical", "--output", str(tmp_path / "am_adapter")])
