"""One exemplar per target or two? Class coverage on the world's scene suite.

    python -m bench.coverage [--quick] [--model DIR] [--pool N] [--targets N]

Scene suite: target layouts from the world's test seeds; exemplars chosen from a pool
of world frames (train seeds, each frame in its own style) by the product's own
retrieval: the pool is exported in the Cityscapes layout and indexed with
``prepare_index``, exactly as the augment job does, and each target takes the best
match (N = 1) or the best match plus the coverage exemplar of
``--exemplars-per-target 2`` (``amadapter.retrieval.coverage``).

Ground truth per N: every target pixel in the style of the exemplar that lends its
class (the first exemplar lends the rest), rendered exactly by the world. A class no
chosen exemplar shows is *untransferable*: its appearance cannot be known from the
exemplars. Reported per N, with the bundled model (am_adapter, 20 steps, guidance
7.5, the job's exemplar path): the untransferable share of the target pixels, the
colour error on all classes, the colour error on the transferable classes only, and
seconds per image; ``none`` (structure only, against the N = 1 truth) as the no-
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
from PIL import Image

from amadapter import world
from amadapter.io.labels import IGNORE_ID, NUM_CLASSES
from amadapter.pipelines.exemplar_regions import ExemplarRegion
from amadapter.pipelines.pipeline_amadapter import AMAdapterPipeline
from amadapter.retrieval import ExemplarIndex
from amadapter.retrieval.coverage import class_pixels, cover_classes
from amadapter.training.validation import colour_error
from amadapter.world.export import export_world
from bench.appearance import DEFAULT_MODEL
from pipeline.exemplar_index import prepare_index
from transforms.retrieve_exemplars import COVERAGE_CANDIDATES

HEIGHT, WIDTH = 64, 128


def scene_suite(n: int, pool_size: int, workdir: Path) -> list[dict]:
    """Per target: its labels and seed, and the ranked pool matches of the job's retrieval."""
    export_world(workdir, pool_size, "train", HEIGHT, WIDTH)
    index = ExemplarIndex.load(prepare_index(None, str(workdir), "cityscapes", "train", str(workdir)))
    seeds = list(world.split_seeds("test", n))
    labels = [world.layout(s, HEIGHT, WIDTH) for s in seeds]
    ranked = index.query(labels, COVERAGE_CANDIDATES, target_paths=[None] * n)
    return [{"labels": l, "seed": s, "ranked": r} for l, s, r in zip(labels, seeds, ranked)]


def chosen_exemplars(case: dict, count: int) -> list[dict]:
    """The exemplars of ``--exemplars-per-target count``: photo, labels, style, lent classes."""
    ranked = case["ranked"]
    chosen = []
    for match, lent in cover_classes(ranked[0], ranked, class_pixels(case["labels"]), count):
        style_seed = int(Path(match.label_path).name.split("_")[2])  # world_{layout}_{style}_...
        labels = np.asarray(Image.open(match.label_path.replace("_labelIds", "_labelTrainIds")))
        chosen.append({"photo": np.asarray(Image.open(match.photo_path).convert("RGB")), "labels": labels,
                       "style": world.style(style_seed), "lent": lent})  # fmt: skip
    return chosen


def truth_and_transferable(labels: np.ndarray, chosen: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """The ground truth (each class in its lender's style) and the transferable-pixel mask."""
    truth = world.render(labels, chosen[0]["style"])
    for exemplar in chosen[1:]:
        lent = np.isin(labels, exemplar["lent"])
        truth = np.where(lent[..., None], world.render(labels, exemplar["style"]), truth)
    shown = np.zeros(NUM_CLASSES + 1, bool)
    for exemplar in chosen:
        shown[np.unique(np.minimum(exemplar["labels"], NUM_CLASSES))] = True
    shown[NUM_CLASSES] = False
    return truth, shown[np.minimum(labels, NUM_CLASSES)]


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
    args = parser.parse_args(argv)
    if args.quick:
        args.targets, args.pool = 16, 200
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    pipe = AMAdapterPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    figures: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        suite = scene_suite(args.targets, args.pool, Path(workdir))
        for case in suite:
            labels = case["labels"]
            for count in (1, 2):
                chosen = chosen_exemplars(case, count)
                truth, transferable = truth_and_transferable(labels, chosen)
                start = time.perf_counter()
                output = render(pipe, case, chosen, "am_adapter", args)
                figures.setdefault(f"seconds_per_image_n{count}", []).append(time.perf_counter() - start)
                labelled = labels != IGNORE_ID
                share = 1 - transferable[labelled].sum() / max(1, labelled.sum())
                figures.setdefault(f"untransferable_share_n{count}", []).append(float(share))
                figures.setdefault(f"colour_error_all_n{count}", []).append(colour_error(output, truth, labels))
                only = np.where(transferable, labels, IGNORE_ID).astype(np.uint8)
                figures.setdefault(f"colour_error_transferable_n{count}", []).append(colour_error(output, truth, only))
                if count == 1:
                    none = render(pipe, case, chosen, "none", args)
                    figures.setdefault("colour_error_all_none", []).append(colour_error(none, truth, labels))
                else:
                    figures.setdefault("targets_with_a_second", []).append(float(len(chosen) > 1))
    result = {name: round(float(np.mean(v)), 4) for name, v in figures.items()}
    result.update(targets=args.targets, pool=args.pool, steps=args.steps, model=args.model,
                  size=f"{HEIGHT}x{WIDTH}", seconds=round(time.perf_counter() - began, 1))  # fmt: skip
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
