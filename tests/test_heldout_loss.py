"""bench.heldout_loss: one fixed, paired evaluation loss per mode and pair kind."""

import math

import pytest

from amadapter.pipelines.model_factory import build_pipeline
from bench import heldout_loss


def test_every_mode_scored_on_the_same_draws_whatever_the_chunking(monkeypatch):
    pipe = build_pipeline("tiny", seed=0)
    figures = heldout_loss.heldout_losses(pipe, version=2, pairs=3, draws=2, beta=10.0, size=(32, 64))
    assert sorted(figures) == sorted(f"{kind}_{mode}" for kind in ("scene", "crop")
                                     for mode in ("none", "augmented", "categorical", "am_adapter"))
    assert all(math.isfinite(v) and v > 0 for v in figures.values())
    assert figures["scene_none"] != figures["scene_categorical"]  # the exemplar is read
    monkeypatch.setattr(heldout_loss, "CHUNK", 1)
    again = heldout_loss.heldout_losses(pipe, version=2, pairs=3, draws=2, beta=10.0, size=(32, 64))
    for key, value in figures.items():
        assert again[key] == pytest.approx(value, rel=1e-4)
