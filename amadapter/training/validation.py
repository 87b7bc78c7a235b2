"""Validation during training: a fixed set of world val pairs rendered with the
current weights and scored with the appearance benchmark's colour error.

A val pair is a target layout and an exemplar of another layout in one style;
the truth is the target layout rendered in the exemplar's style
(``data.WorldPairs`` on the val split, rows of one step). The score is the mean
over pairs of ``colour_error``: per class of the target, the RGB (0-255)
distance between the class's mean colour in the output and in the truth, so it
measures what the exemplar path is for, appearance transfer. Lower is better.
Stage 2 renders in mode ``am_adapter``; stage 1 in ``categorical`` (the
training-free reading the adapter builds on).
"""

from __future__ import annotations

import numpy as np

from amadapter.training.data import WorldPairs, to_uint8
from amadapter.training.loop import Validation
from amadapter.world.metrics import colour_error

METRIC = "colour_error"


def world_validation(pipe, height: int, width: int, pairs: int, mode: str, num_inference_steps: int = 10,
                     guidance_scale: float = 3.0, seed: int = 0, version: int = 1,
                     domain: str | None = None) -> Validation:
    """``Validation`` of ``pipe`` on ``pairs`` fixed val scene pairs of world ``version`` and
    ``domain``, (height, width)."""
    batch = WorldPairs(height, width, pairs, split="val", seed=seed, version=version, domain=domain).batch(0, range(pairs))
    truth = to_uint8(batch["image"])
    targets = batch["labels"].numpy()
    exemplars = list(to_uint8(batch["exemplar_image"]))
    exemplar_labels = list(batch["exemplar_labels"].numpy())
    pipe.set_progress_bar_config(disable=True)

    def score() -> float:
        images = pipe(list(targets), exemplar_images=exemplars, exemplar_labels=exemplar_labels,
                      seeds=list(range(pairs)), num_inference_steps=num_inference_steps,
                      guidance_scale=guidance_scale, mode=mode, output_type="np").images
        outputs = np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)
        return float(np.mean([colour_error(o, t, l) for o, t, l in zip(outputs, truth, targets)]))

    return Validation(METRIC, score)

