"""The procedural world: determinism, coverage, exact appearance transfer, export."""

import numpy as np
import pytest
from PIL import Image

from amadapter import world
from amadapter.io.labels import CLASS_NAMES, label_ids_to_train_ids
from amadapter.world.export import export_world


def test_same_seed_same_scene_and_other_seeds_differ():
    a_img, a_lab = world.scene(17, 4, 64, 128)
    b_img, b_lab = world.scene(17, 4, 64, 128)
    assert a_lab.dtype == np.uint8 and a_lab.shape == (64, 128) and a_img.shape == (64, 128, 3)
    np.testing.assert_array_equal(a_lab, b_lab)
    np.testing.assert_array_equal(a_img, b_img)
    assert not np.array_equal(world.layout(18, 64, 128), a_lab)
    assert not np.allclose(world.style(5).colors, world.style(4).colors)


def test_layout_and_style_streams_are_independent():
    # Changing the style seed never changes the layout, and vice versa.
    _, lab_a = world.scene(3, 10)
    _, lab_b = world.scene(3, 11)
    np.testing.assert_array_equal(lab_a, lab_b)
    np.testing.assert_array_equal(world.style(3).colors, world.style(3).colors)


def test_every_world_class_appears_across_seeds():
    seen = set()
    for seed in range(60):
        seen.update(int(c) for c in np.unique(world.layout(seed, 64, 128)))
    missing = [CLASS_NAMES[c] for c in world.WORLD_CLASSES if c not in seen]
    assert not missing, f"classes never generated: {missing}"
    for name in ("sky", "road", "sidewalk", "building", "vegetation", "terrain", "pole", "traffic sign",
                 "traffic light", "car", "truck", "bus", "person", "rider", "bicycle"):
        assert CLASS_NAMES.index(name) in world.WORLD_CLASSES


def test_layouts_are_valid_train_ids_at_other_sizes():
    for size in ((32, 64), (96, 160), (128, 256)):
        lab = world.layout(7, *size)
        assert lab.shape == size and int(lab.max()) < 19


def test_style_colours_are_distinct_per_class():
    for seed in range(20):
        colors = world.style(seed).colors
        dist = np.linalg.norm(colors[:, None] - colors[None], axis=-1) + np.eye(len(colors)) * 1e9
        assert dist.min() >= 50.0


def test_render_gives_each_region_its_style_colour():
    # A region's mean colour is nearer its own class colour than any other class's.
    for seed in range(40):
        appearance = world.style(seed + 1000)
        lab = world.layout(seed)
        img = world.render(lab, appearance).astype(np.float32)
        for c in np.unique(lab):
            region = lab == c
            if region.sum() < 30:
                continue
            dist = np.linalg.norm(appearance.colors - img[region].mean(axis=0), axis=1)
            assert dist.argmin() == c, (seed, CLASS_NAMES[c], dist[c], dist.min())


def test_render_is_exact_transfer_ground_truth():
    # One style on two layouts: identical pixels wherever the two layouts agree.
    appearance = world.style(42)
    lab_a, lab_b = world.layout(1), world.layout(2)
    img_a, img_b = world.render(lab_a, appearance), world.render(lab_b, appearance)
    same = lab_a == lab_b
    assert same.sum() > 1000
    np.testing.assert_array_equal(img_a[same], img_b[same])
    assert not np.array_equal(img_a[~same], img_b[~same])


def test_split_seed_ranges_are_disjoint_and_bounded():
    ranges = list(world.SPLIT_SEEDS.values())
    for i, a in enumerate(ranges):
        for b in ranges[i + 1:]:
            assert a.stop <= b.start or b.stop <= a.start
    assert max(r.stop for r in ranges) <= 10**6  # fits the 6-digit frame names
    assert list(world.split_seeds("val", 3, start=2)) == [800_002, 800_003, 800_004]
    with pytest.raises(ValueError):
        world.split_seeds("test", 200_000)
    with pytest.raises(ValueError):
        world.split_seeds("holdout", 1)


def test_export_is_a_readable_cityscapes_tree(tmp_path):
    stems = export_world(tmp_path, 3, split="test", height=32, width=64)
    assert stems[0] == "world_900000_900000"
    for stem, seed in zip(stems, world.split_seeds("test", 3)):
        label_dir = tmp_path / "gtFine" / "test" / "world"
        train_ids = np.array(Image.open(label_dir / f"{stem}_gtFine_labelTrainIds.png"))
        label_ids = np.array(Image.open(label_dir / f"{stem}_gtFine_labelIds.png"))
        photo = np.array(Image.open(tmp_path / "leftImg8bit" / "test" / "world" / f"{stem}_leftImg8bit.png"))
        expected_photo, expected_labels = world.scene(seed, seed, 32, 64)
        np.testing.assert_array_equal(train_ids, expected_labels)
        np.testing.assert_array_equal(label_ids_to_train_ids(label_ids), expected_labels)
        np.testing.assert_array_equal(photo, expected_photo)
