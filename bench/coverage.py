"""One exemplar per target or two? Class coverage on the world's scene suite.

    python -m bench.coverage [--quick] [--model DIR] [--pool N] [--targets N]

Scene suite (``bench.scene_suite``, world v1): target layouts from the world's test
seeds; exemplars chosen from a pool of world frames by the product's own retrieval,
the best match (N = 1) or the best match plus the coverage exemplar of
``--exemplars-per-target 2``. Ground truth per N: every target pixel in the style of
the exemplar that lends its class. A class no chosen exemplar shows is
*untransferable*: its appearance cannot be known from the exemplars. Reported per N, with the bundled model (am_adapter, 20 steps, guidance
7.5, the job's exemplar path): the untransferable share of the target pixels, the
colour error on all classes, the colour error on the transferable classes only, and
the colour error on the classes the second exemplar lends (targets that get one:
no appearance source at N = 1, the second exemplar at N = 2), and
seconds per image (over the targets that get a second exemplar; the others render the
same call under both N, so they are rendered once); ``none`` (structure only, against the N = 1 truth) as the no-
exemplar reference. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from amadapter.io.labels import IGNORE_ID
from amadapter.pipelines.exemplar_regions import ExemplarRegion
from amadapter.pipelines.pipeline_amadapter import AMAdapterPipeline
from amadapter.world.metrics import colour_error
from bench.appearance import DEFAULT_MODEL
from bench.scene_suite import HEIGHT, WIDTH, chosen_exemplars, scene_suite, truth_and_transferable


def render(pipe, case: dict, chosen: list[dict], mode: str, args) -> np.ndarray:
    assignment = [0] if len(chosen) == 1 else [[ExemplarRegion(0)] + [
        ExemplarRegion(i, tuple(e["lent"])) for i, e in enumerate(chosen) if i]]  # fmt: skip
    images = pipe([case["labels"]], [e["photo"] for e in chosen], [e["labels"] for e in chosen],
                  assignment=assignment, mode=mode, seeds=[case["seed"]], num_inference_steps=args.steps,
                  guidance_scale=7.5, output_type="np").images  # fmt: skip
    return np.clip(np.rint(images[0] * 255), 0, 255).astype(np.uint8)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="16 targets, a pool of 200")
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--targets", type=int, default=64)
    parser.add_argument("--pool", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--split", default="val", choices=("val", "test"),
                        help="the targets' split: choose the default on val, report test once")
    args = parser.parse_args(argv)
    if args.quick:
        args.targets, args.pool = 16, 200
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    pipe = AMAdapterPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    figures: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        suite = scene_suite(args.targets, args.pool, Path(workdir), split=args.split)
        for case in suite:
            labels = case["labels"]
            choices = {count: chosen_exemplars(case, count) for count in (1, 2)}
            has_second = len(choices[2]) > 1
            outputs = {}
            for count, chosen in choices.items():
                truth, transferable = truth_and_transferable(case, chosen)
                if count == 2 and not has_second:
                    output = outputs[1]  # the same call as N = 1: the same bytes
                else:
                    start = time.perf_counter()
                    output = outputs[count] = render(pipe, case, chosen, "am_adapter", args)
                    if has_second:
                        figures.setdefault(f"seconds_per_image_n{count}", []).append(time.perf_counter() - start)
                labelled = labels != IGNORE_ID
                share = 1 - transferable[labelled].sum() / max(1, labelled.sum())
                figures.setdefault(f"untransferable_share_n{count}", []).append(float(share))
                figures.setdefault(f"colour_error_all_n{count}", []).append(colour_error(output, truth, labels))
                only = np.where(transferable, labels, IGNORE_ID).astype(np.uint8)
                figures.setdefault(f"colour_error_transferable_n{count}", []).append(colour_error(output, truth, only))
                if has_second:  # the classes the second exemplar lends: no source at N = 1, one at N = 2
                    lent = np.where(np.isin(labels, choices[2][1]["lent"]), labels, IGNORE_ID).astype(np.uint8)
                    figures.setdefault(f"colour_error_second_classes_n{count}", []).append(
                        colour_error(output, truth, lent)
                    )
                if count == 1:
                    none = render(pipe, case, chosen, "none", args)
                    figures.setdefault("colour_error_all_none", []).append(colour_error(none, truth, labels))
                else:
                    figures.setdefault("targets_with_a_second", []).append(float(has_second))
    result = {name: round(float(np.mean(v)), 4) for name, v in figures.items()}
    result.update(split=args.split, targets=args.targets, pool=args.pool, steps=args.steps, model=args.model,
                  size=f"{HEIGHT}x{WIDTH}", seconds=round(time.perf_counter() - began, 1))  # fmt: skip
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
