"""The downstream benchmark's baselines: albumentations' jitter, FDA and histogram matching
as seeded, picklable transforms of a training frame, towards real reference photos."""

import pickle

import numpy as np
import pytest
from PIL import Image

from amadapter import world
from amadapter.world.versions import render_scene
from bench.domain_baselines import Baseline


@pytest.fixture(scope="module")
def night_references(tmp_path_factory):
    folder = tmp_path_factory.mktemp("night")
    paths = []
    for seed in range(4):
        path = folder / f"{seed}.png"
        Image.fromarray(render_scene(world.layout_parts(seed, 32, 64), seed, 2, "night")).save(path)
        paths.append(str(path))
    return tuple(paths)


@pytest.mark.parametrize("kind,strength", [("jitter", 0.6), ("fda", 0.1), ("histogram", 1.0)])
def test_a_baseline_repeats_with_its_seed_and_survives_pickling(kind, strength, night_references):
    day = render_scene(world.layout_parts(7, 32, 64), 7, 2, "day")
    baseline = pickle.loads(pickle.dumps(Baseline(kind, strength, night_references)))
    first = baseline(day, np.random.default_rng(3))
    assert first.shape == day.shape and first.dtype == np.uint8
    assert np.array_equal(first, baseline(day, np.random.default_rng(3)))
    assert not np.array_equal(first, day)


@pytest.mark.parametrize("kind", ["fda", "histogram"])
def test_domain_adaptation_moves_a_day_photo_towards_the_night_references(kind, night_references):
    day = render_scene(world.layout_parts(7, 32, 64), 7, 2, "day")
    night_mean = np.mean([np.asarray(Image.open(p)).mean() for p in night_references])
    adapted = Baseline(kind, 1.0 if kind == "histogram" else 0.15, night_references)(day, np.random.default_rng(0))
    assert abs(adapted.mean() - night_mean) < 0.5 * abs(day.mean() - night_mean)


def test_unknown_baselines_and_missing_references_are_errors():
    day = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="unknown baseline 'blur'"):
        Baseline("blur", 1.0)(day, np.random.default_rng(0))
    with pytest.raises(ValueError, match="need reference photos"):
        Baseline("fda", 0.1)(day, np.random.default_rng(0))
