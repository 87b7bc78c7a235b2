"""Appearance transfer on the procedural world, with exact ground truth.

    python -m bench.appearance [--quick] [--model DIR] [--exemplar-path inverted|noised]

Held-out test pairs: a target layout, and an exemplar with another layout in a
style; the ground truth is ``render(target layout, exemplar style)``. Every
mode (``none``, ``augmented``, ``categorical`` with beta chosen on val pairs,
``am_adapter``) runs on the same weights, pairs and seeds.

- colour error: per pair, the mean over the target's classes of the RGB (0-255)
  distance between the mean colour of the class's pixels in the output and in
  the ground truth; averaged over pairs;
- layout mIoU: a small segmenter trained on the world (``world_segmenter``),
  applied to the outputs, against the target labels; also on the ground truth.

Writes a contact sheet (target labels | exemplar | none | augmented |
categorical | am_adapter | ground truth) to ``bench/appearance.png``. The last
printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from amadapter import world
from amadapter.pipelines.exemplar_start import DEFAULT_EXEMPLAR_PATH, EXEMPLAR_PATHS
from amadapter.io.labels import train_ids_to_colors
from amadapter.pipelines.pipeline_amadapter import AMAdapterPipeline
from amadapter.training.validation import colour_error  # the metric validation during training uses
from pipeline.options import parse_size
from bench.world_segmenter import load_or_train, mean_iou, segment

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "amadapter" / "demo_model"
MODES = ("none", "augmented", "categorical", "am_adapter")


def make_pairs(split: str, n: int, height: int, width: int) -> dict[str, np.ndarray]:
    """n pairs of one split: target and exemplar layouts from disjoint seeds, one style each."""
    targets, exemplars, styles = (world.split_seeds(split, n, start=k * n) for k in range(3))
    target_labels, exemplar_labels, exemplar_images, truths = [], [], [], []
    for t, e, s in zip(targets, exemplars, styles):
        appearance = world.style(s)
        t_ids, e_ids = world.layout(t, height, width), world.layout(e, height, width)
        target_labels.append(t_ids)
        exemplar_labels.append(e_ids)
        exemplar_images.append(world.render(e_ids, appearance))
        truths.append(world.render(t_ids, appearance))
    return {
        "target_labels": np.stack(target_labels),
        "exemplar_labels": np.stack(exemplar_labels),
        "exemplar_images": np.stack(exemplar_images),
        "truth": np.stack(truths),
        "seeds": np.array(list(targets)),
    }


def render_mode(pipe, pairs: dict, mode: str, args, beta: float = 5.0) -> np.ndarray:
    """(n, H, W, 3) uint8 outputs; each target uses its own exemplar and seed."""
    outputs = []
    n = len(pairs["seeds"])
    for i in range(0, n, args.batch):
        rows = slice(i, i + args.batch)
        kwargs = {}
        if mode != "none":
            kwargs = dict(exemplar_images=list(pairs["exemplar_images"][rows]),
                          exemplar_labels=list(pairs["exemplar_labels"][rows]))
        images = pipe(
            list(pairs["target_labels"][rows]),
            seeds=[int(s) for s in pairs["seeds"][rows]],
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            mode=mode,
            categorical_beta=beta,
            exemplar_path=args.exemplar_path,
            output_type="np",
            **kwargs,
        ).images
        outputs.append(np.clip(np.rint(images * 255), 0, 255).astype(np.uint8))
    return np.concatenate(outputs)


def mean_colour_error(outputs: np.ndarray, pairs: dict) -> float:
    return float(np.mean([colour_error(o, t, l) for o, t, l in zip(outputs, pairs["truth"], pairs["target_labels"])]))


def contact_sheet(pairs: dict, outputs: dict[str, np.ndarray], rows: int, path: Path) -> None:
    lines = []
    for i in range(min(rows, len(pairs["seeds"]))):
        cells = [train_ids_to_colors(pairs["target_labels"][i]), pairs["exemplar_images"][i]]
        cells += [outputs[m][i] for m in MODES] + [pairs["truth"][i]]
        gap = np.full((cells[0].shape[0], 2, 3), 255, np.uint8)
        lines.append(np.concatenate([x for c in cells for x in (c, gap)][:-1], axis=1))
        lines.append(np.full((2, lines[-1].shape[1], 3), 255, np.uint8))
    sheet = np.concatenate(lines[:-1])
    Image.fromarray(sheet).resize((sheet.shape[1] * 2, sheet.shape[0] * 2), Image.NEAREST).save(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="16 test pairs, 8 val pairs, shorter segmenter training")
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--val-pairs", type=int, default=16)
    parser.add_argument("--betas", type=float, nargs="+", default=[1.0, 2.5, 5.0, 10.0])
    parser.add_argument("--size", type=parse_size, default=(64, 128), help="HxW of the world scenes")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--batch", type=int, default=8, help="targets per pipeline call")
    parser.add_argument("--segmenter-steps", type=int, default=3000)
    parser.add_argument("--segmenter-batch", type=int, default=8)
    parser.add_argument("--cache", default="out/bench_cache", help="where the trained segmenter is kept")
    parser.add_argument("--sheet", default="bench/appearance.png")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--exemplar-path", choices=EXEMPLAR_PATHS, default=DEFAULT_EXEMPLAR_PATH,
                        help="how exemplar rows start and move (amadapter.pipelines.exemplar_start)")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.val_pairs, args.segmenter_steps = 16, 8, 600
    torch.set_num_threads(args.threads)
    began = time.perf_counter()

    pipe = AMAdapterPipeline.from_pretrained(args.model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    height, width = args.size
    test = make_pairs("test", args.pairs, height, width)
    val = make_pairs("val", args.val_pairs, height, width)

    beta_errors = {b: mean_colour_error(render_mode(pipe, val, "categorical", args, b), val) for b in args.betas}
    beta = min(beta_errors, key=beta_errors.get)
    print(f"categorical beta on {args.val_pairs} val pairs: " + ", ".join(f"{b}: {e:.1f}" for b, e in beta_errors.items()))
    # what choices between models or options (e.g. the exemplar path) are made on
    val_error_am = mean_colour_error(render_mode(pipe, val, "am_adapter", args), val)

    outputs, timings = {}, {}
    for mode in MODES:
        t = time.perf_counter()
        outputs[mode] = render_mode(pipe, test, mode, args, beta)
        timings[mode] = time.perf_counter() - t
        print(f"{mode}: colour error {mean_colour_error(outputs[mode], test):.1f} ({timings[mode]:.0f} s)")

    segmenter = load_or_train(args.cache, args.segmenter_steps, args.segmenter_batch, (height, width))
    miou = {m: mean_iou(segment(segmenter, outputs[m]), test["target_labels"]) for m in MODES}
    miou_truth = mean_iou(segment(segmenter, test["truth"]), test["target_labels"])
    contact_sheet(test, outputs, 8, Path(args.sheet))

    errors = {m: mean_colour_error(outputs[m], test) for m in MODES}
    result = {f"color_error_{m}": round(errors[m], 2) for m in MODES}
    result.update({f"miou_{m}": round(miou[m], 4) for m in MODES})
    result.update({
        "miou_ground_truth": round(miou_truth, 4),
        "pairs": args.pairs,
        "categorical_beta": beta,
        "val_color_error_am_adapter": round(val_error_am, 2),
        "exemplar_path": args.exemplar_path,
        "ratio_am_vs_augmented": round(errors["am_adapter"] / errors["augmented"], 3),
        "ratio_am_vs_none": round(errors["am_adapter"] / errors["none"], 3),
        "ratio_miou_am_vs_ground_truth": round(miou["am_adapter"] / miou_truth, 3),
        "steps": args.steps,
        "guidance": args.guidance,
        "size": [height, width],
        "model": args.model,
        "seconds": round(time.perf_counter() - began, 1),
    })
    print(json.dumps(result))


if __name__ == "__main__":
    main()
