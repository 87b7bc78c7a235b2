"""Appearance domains: layouts shared, styles drawn from each domain's class ranges, the
default world untouched (its checksums: test_world_v1_frozen, test_world_v2)."""

import numpy as np
import pytest
from PIL import Image

from amadapter import world
from amadapter.io.labels import IGNORE_ID
from amadapter.training.data import WorldPairs, WorldScenes
from amadapter.world.domains import DOMAIN_NAMES, domain_style
from amadapter.world.versions import render_scene
from jobs import make_world

SEEDS = range(800_000, 800_024)  # val seeds


def _photos(domain, version=1, seeds=SEEDS):
    scenes = [world.layout_parts(s, 64, 128) for s in seeds]
    return scenes, [render_scene(scene, s, version, domain) for scene, s in zip(scenes, seeds)]


def _class_mean(scenes, photos, cls):
    pixels = [p[scene.ids == cls] for scene, p in zip(scenes, photos) if (scene.ids == cls).any()]
    return np.concatenate(pixels).astype(float).mean()


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("domain", DOMAIN_NAMES)
def test_domain_styles_are_deterministic_and_their_own(domain, version):
    scene = world.layout_parts(800_005, 64, 128)
    first = render_scene(scene, 800_005, version, domain)
    assert np.array_equal(first, render_scene(scene, 800_005, version, domain))
    assert not np.array_equal(first, render_scene(scene, 800_005, version))  # not the default style
    others = [render_scene(scene, 800_005, version, d) for d in DOMAIN_NAMES if d != domain]
    assert not any(np.array_equal(first, other) for other in others)


def test_night_is_darker_with_its_sky_darkest_and_its_lights_bright():
    day_scenes, day = _photos("day")
    _, night = _photos("night")
    assert np.mean(night) < 0.45 * np.mean(day)
    # the day sky is brighter than the road, the night sky darker: no global transform maps one to the other
    assert _class_mean(day_scenes, day, world.SKY) > _class_mean(day_scenes, day, world.ROAD)
    assert _class_mean(day_scenes, night, world.SKY) < _class_mean(day_scenes, night, world.ROAD)
    assert _class_mean(day_scenes, night, world.LIGHT) > 3 * _class_mean(day_scenes, night, world.ROAD)


def test_fog_lowers_contrast_and_keeps_day_hues():
    scenes, day = _photos("day")
    _, fog = _photos("fog")
    assert np.mean([p.std() for p in fog]) < 0.6 * np.mean([p.std() for p in day])
    blue_minus_red = lambda photos: _class_mean(scenes, [p[..., 2] - p[..., 0].astype(int) for p in photos], world.SKY)  # noqa: E731
    assert blue_minus_red(day) > 0 and blue_minus_red(fog) > 0


def test_class_colours_stay_within_the_domains_ranges():
    for domain in DOMAIN_NAMES:
        colours = np.stack([domain_style(s, domain).colors for s in SEEDS])  # (seeds, 19, 3)
        spread_within_class = colours.std(axis=0).mean()
        spread_between_classes = colours.mean(axis=0).std(axis=0).mean()
        assert spread_within_class < spread_between_classes, domain


def test_unknown_domain_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown world domain 'dusk'"):
        render_scene(world.layout_parts(0, 32, 64), 0, 1, "dusk")


def test_training_sources_draw_the_domain_on_the_same_layouts():
    plain, night = WorldScenes(32, 64, 2), WorldScenes(32, 64, 2, domain="night")
    assert np.array_equal(plain(0)["labels"], night(0)["labels"])
    assert night(0)["image"].mean() < plain(0)["image"].mean()
    pairs = WorldPairs(32, 64, 2, domain="fog", version=2)(0)
    assert pairs["exemplar_image"].shape == pairs["image"].shape


def test_make_world_exports_a_domain_with_the_default_worlds_labels(tmp_path, capsys):
    for name, domain in (("plain", []), ("night", ["--world-domain", "night"])):
        make_world.main(["--out", str(tmp_path / name), "--n", "3", "--split", "val", "--size", "32x64", *domain])
    assert "val world v1 night scenes" in capsys.readouterr().out
    for stem in (f"world_{s:06d}_{s:06d}" for s in range(800_000, 800_003)):
        labels = [np.asarray(Image.open(tmp_path / n / "gtFine/val/world" / f"{stem}_gtFine_labelTrainIds.png"))
                  for n in ("plain", "night")]  # fmt: skip
        photos = [np.asarray(Image.open(tmp_path / n / "leftImg8bit/val/world" / f"{stem}_leftImg8bit.png"))
                  for n in ("plain", "night")]  # fmt: skip
        assert np.array_equal(*labels) and IGNORE_ID not in labels[0]
        seed = int(stem.split("_")[1])
        assert np.array_equal(photos[1], render_scene(world.layout_parts(seed, 32, 64), seed, 1, "night"))
        assert not np.array_equal(*photos)
