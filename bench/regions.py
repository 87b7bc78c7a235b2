"""Per-region exemplars on the procedural world, with exact ground truth.

    python -m bench.regions [--pairs N] [--model DIR]

Per pair: a target layout and two exemplars in styles A and B (other layouts).
The target's road and sky are assigned to exemplar A, the rest to exemplar B
(``ExemplarRegion``). The ground truth is the composite: render(target, A) on road
and sky, render(target, B) elsewhere. Three renders with the same seed: the two
regions, A alone, B alone. Colour error (``amadapter.training.validation.colour_error``: per
class, the RGB distance between mean colours) is measured on the lent region
(road + sky) and on the rest, against render(target, A) and render(target, B),
and on the whole image against the composite. The last printed line is one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from amadapter import world
from amadapter.pipelines.exemplar_regions import ExemplarRegion
from amadapter.io.labels import IGNORE_ID
from amadapter.pipelines.pipeline_amadapter import AMAdapterPipeline
from amadapter.world.metrics import colour_error

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "amadapter" / "demo_model"
LENT = (world.ROAD, world.SKY)  # the classes exemplar A lends
RENDERS = ("regions", "only_a", "only_b")


def masked_error(output: np.ndarray, truth: np.ndarray, labels: np.ndarray, where: np.ndarray) -> float:
    return colour_error(output, truth, np.where(where, labels, IGNORE_ID).astype(np.uint8))


def region_errors(pipe, pairs: int, steps: int, split: str = "test", size=(64, 128)) -> dict[str, dict]:
    """Mean errors per render: ``lent_vs_a``, ``lent_vs_b``, ``rest_vs_a``, ``rest_vs_b``,
    ``vs_composite``."""
    seeds = [world.split_seeds(split, pairs, start=k * pairs) for k in range(5)]
    sums: dict[str, dict[str, list[float]]] = {r: {} for r in RENDERS}
    for i, (t, ea, eb, sa, sb) in enumerate(zip(*seeds)):
        target, layout_a, layout_b = (world.layout(s, *size) for s in (t, ea, eb))
        style_a, style_b = world.style(sa), world.style(sb)
        photo_a, photo_b = world.render(layout_a, style_a), world.render(layout_b, style_b)
        truth_a, truth_b = world.render(target, style_a), world.render(target, style_b)
        lent = np.isin(target, LENT)
        composite = np.where(lent[..., None], truth_a, truth_b)
        calls = {
            "regions": ([photo_a, photo_b], [layout_a, layout_b], [[ExemplarRegion(0, LENT), ExemplarRegion(1)]]),
            "only_a": ([photo_a], [layout_a], [0]),
            "only_b": ([photo_b], [layout_b], [0]),
        }
        for name, (photos, layouts, assignment) in calls.items():
            image = pipe([target], photos, layouts, assignment=assignment, seeds=[i], num_inference_steps=steps).images[0]
            out = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
            errors = {
                "lent_vs_a": masked_error(out, truth_a, target, lent),
                "lent_vs_b": masked_error(out, truth_b, target, lent),
                "rest_vs_a": masked_error(out, truth_a, target, ~lent),
                "rest_vs_b": masked_error(out, truth_b, target, ~lent),
                "vs_composite": colour_error(out, composite, target),
            }
            for key, value in errors.items():
                sums[name].setdefault(key, []).append(value)
    return {name: {k: float(np.mean(v)) for k, v in by.items()} for name, by in sums.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    pipe = AMAdapterPipeline.from_pretrained(args.model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    errors = region_errors(pipe, args.pairs, args.steps)
    result = {f"{name}_{key}": round(v, 2) for name, by in errors.items() for key, v in by.items()}
    result.update(pairs=args.pairs, steps=args.steps, lent_classes=["road", "sky"], model=args.model,
                  seconds=round(time.perf_counter() - began, 1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
