"""Validation during training: fixed world val pairs rendered every K steps, the colour
error logged beside the loss, the best checkpoint kept."""

import json

import numpy as np

from amadapter.pipelines.model_factory import build_pipeline
from amadapter.training.checkpoints import best_checkpoint
from amadapter.training.loop import LOG_FILE
from amadapter.training.validation import world_validation
from amadapter.world.metrics import colour_error
from jobs import train_structure as train_structure_job


def test_validation_is_logged_and_the_best_checkpoint_kept(tmp_path):
    train_structure_job.main(["--model", "tiny", "--size", "32x64", "--batch-size", "2", "--steps", "4",
                              "--lr", "3e-3", "--log-every", "4", "--validate-every", "2", "--val-pairs", "2",
                              "--val-steps", "2", "--loader-workers", "0", "--run-dir", str(tmp_path / "run"),
                              "--output", str(tmp_path / "model")])
    rows = [json.loads(line) for line in (tmp_path / "run" / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    scores = {r["step"]: r["val_colour_error"] for r in rows}
    assert all(np.isfinite(s) and "loss" in r for s, r in zip(scores.values(), rows))
    best = best_checkpoint(tmp_path / "run", "unet")
    assert best.step == min(scores, key=scores.get) and best.extra["score"] == min(scores.values())
    assert (best.path / "unet.safetensors").is_file()


def test_world_validation_scores_what_it_renders():
    pipe = build_pipeline("tiny", seed=0)
    validation = world_validation(pipe, 32, 64, pairs=2, mode="categorical", num_inference_steps=2)
    first, again = validation.score(), validation.score()
    assert validation.metric == "colour_error" and first == again and first > 0  # fixed pairs and seeds


def test_colour_error_is_the_mean_class_colour_distance():
    labels = np.array([[0, 0, 1, 255]], np.uint8)
    truth = np.zeros((1, 4, 3), np.uint8)
    output = truth.copy()
    output[0, 2] = (3, 4, 0)  # class 1 off by 5; class 0 exact; ignore pixel not counted
    output[0, 3] = 200
    assert colour_error(output, truth, labels) == 2.5
