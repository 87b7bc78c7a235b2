"""bench.world_segmenter: one cached segmenter per world version and architecture, its val mIoU reported."""

import json

from bench.world_segmenter import SegmenterShape, cache_path, main


def run(capsys, argv):
    main(argv)
    lines = capsys.readouterr().out.strip().splitlines()
    return lines, json.loads(lines[-1])


def test_a_segmenter_per_world_version_cached_and_scored_on_val(tmp_path, capsys):
    common = ["--steps", "3", "--batch", "2", "--size", "32x64", "--eval-frames", "4", "--cache", str(tmp_path)]
    lines, v2 = run(capsys, common + ["--world-version", "2", "--width", "8"])
    assert any(line.startswith("trained the world segmenter") for line in lines)
    narrow = SegmenterShape(width=8)
    assert v2["path"] == str(cache_path(tmp_path, 3, 2, (32, 64), version=2, shape=narrow))
    assert v2["path"] != str(cache_path(tmp_path, 3, 2, (32, 64), version=1, shape=narrow))
    assert 0.0 <= v2["val_miou_ground_truth"] <= 1.0
    lines, again = run(capsys, common + ["--world-version", "2", "--width", "8"])
    assert len(lines) == 1 and again["val_miou_ground_truth"] == v2["val_miou_ground_truth"]  # the cached one


def test_a_deeper_segmenter_with_coordinates_is_cached_under_its_own_name(tmp_path, capsys):
    common = ["--steps", "2", "--batch", "2", "--size", "32x64", "--eval-frames", "2", "--cache", str(tmp_path)]
    _, deep = run(capsys, common + ["--width", "8", "--levels", "4", "--coordinates"])
    assert deep["segmenter"] == "SmallSegmenter(width=8, levels=4, coordinates)"
    assert deep["path"] == str(cache_path(tmp_path, 2, 2, (32, 64), shape=SegmenterShape(8, 4, True)))
    assert deep["path"] != str(cache_path(tmp_path, 2, 2, (32, 64), shape=SegmenterShape(8)))
    lines, again = run(capsys, common + ["--width", "8", "--levels", "4", "--coordinates"])
    assert len(lines) == 1 and again == {**deep, "seconds": again["seconds"]}  # read back as the same model
