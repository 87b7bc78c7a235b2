"""bench.world_segmenter: one cached segmenter per world version and width, its val mIoU reported."""

import json

from bench.world_segmenter import cache_path, main


def run(capsys, argv):
    main(argv)
    lines = capsys.readouterr().out.strip().splitlines()
    return lines, json.loads(lines[-1])


def test_a_segmenter_per_world_version_cached_and_scored_on_val(tmp_path, capsys):
    common = ["--steps", "3", "--batch", "2", "--size", "32x64", "--eval-frames", "4", "--cache", str(tmp_path)]
    lines, v2 = run(capsys, common + ["--world-version", "2", "--width", "8"])
    assert any(line.startswith("trained the world segmenter") for line in lines)
    assert v2["path"] == str(cache_path(tmp_path, 3, 2, (32, 64), version=2, width=8))
    assert v2["path"] != str(cache_path(tmp_path, 3, 2, (32, 64), version=1, width=8))
    assert 0.0 <= v2["val_miou_ground_truth"] <= 1.0
    lines, again = run(capsys, common + ["--world-version", "2", "--width", "8"])
    assert len(lines) == 1 and again["val_miou_ground_truth"] == v2["val_miou_ground_truth"]  # the cached one
