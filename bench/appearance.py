"""Appearance transfer on the procedural world, with exact ground truth: two suites.

    python -m bench.appearance [--quick] [--world-version 1|2] [--model DIR] [--floors-only]
                               [--skip-miou] [--exemplar-path inverted|noised]

Every mode (``none``, ``augmented``, ``categorical`` with beta chosen on val pairs,
``am_adapter``) runs on the same weights, pairs and seeds.

- **Scene suite** (``bench.scene_suite``): a test layout, its exemplar chosen from a
  pool of train frames by the product's own retrieval; the ground truth is the target
  layout in the exemplar's style. Score: colour error per class (mean-colour RGB
  distance) over the *transferable* classes only (shown by the exemplar), averaged;
  the untransferable share of the target pixels is reported beside it.
- **Crop suite** (``amadapter.world.crops``): two windows of one scene; the exemplar is
  one, the target the other, the ground truth the target window of the same render.
  Score: colour error per instance shown in both crops (``amadapter.world.metrics``).
- **Floors**, in the same run: ``vae_floor`` (ground truth encoded and decoded by the
  model's VAE, crop-suite metric; ``scene_vae_floor`` with the scene metric),
  ``scene_oracle``/``crop_oracle`` (am_adapter with the ground truth itself as the
  exemplar), and, without the model, ``scene_class_only_floor`` and
  ``crop_class_only_floor``: the class-only matcher of ``metrics.class_only_image``.
- **Layout**: mIoU of each mode's outputs (both suites pooled) by the cached world
  segmenter (``bench.world_segmenter``, trained on scenes of the run's world version,
  ``--segmenter-steps``, ``--segmenter-width``, ``-levels``, ``-coordinates``), and of the ground truth;
  ``--skip-miou`` leaves it out.

World v1 stays the default until a model trained on v2 exists. ``--floors-only``
computes the model-free floors and the VAE floor only (seconds), for tuning the world.
Writes one contact sheet per suite (labels | exemplar | four modes | ground truth) to
``bench/appearance_{scene,crop}_v{version}.png``. The last printed line is one JSON object;
``*_val_*`` figures are on the val pairs (choose models and options there).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL
from PIL import Image

from amadapter.io.labels import train_ids_to_colors
from amadapter.pipelines.exemplar_start import DEFAULT_EXEMPLAR_PATH, EXEMPLAR_PATHS
from amadapter.pipelines.pipeline_amadapter import AMAdapterPipeline
from amadapter.world import metrics
from amadapter.world.crops import crop_pairs
from amadapter.world.versions import WORLD_VERSIONS
from bench.scene_suite import HEIGHT, WIDTH, chosen_exemplars, scene_suite, truth_and_transferable
from bench.world_segmenter import add_shape_arguments, load_or_train, mean_iou, segment, shape_from

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "amadapter" / "demo_model"
MODES = ("none", "augmented", "categorical", "am_adapter")
SUITES = ("scene", "crop")


def scene_pairs(split: str, n: int, pool: int, version: int, workdir: Path) -> dict[str, np.ndarray]:
    """n scene-suite pairs of ``split``: the target, its retrieved exemplar, the truth."""
    rows = []
    for case in scene_suite(n, pool, workdir, split, version):
        exemplar = chosen_exemplars(case, 1)[0]
        truth, _ = truth_and_transferable(case, [exemplar])
        rows.append({"target_labels": case["labels"], "exemplar_labels": exemplar["labels"],
                     "exemplar_image": exemplar["photo"], "truth": truth, "seed": case["seed"]})  # fmt: skip
    return {key: np.stack([r[key] for r in rows]) for key in rows[0]}


def suite_pairs(suite: str, split: str, n: int, args, workdir: Path) -> dict[str, np.ndarray]:
    if suite == "scene":
        return scene_pairs(split, n, args.pool, args.world_version, workdir)  # one pool and index for both splits
    return crop_pairs(split, n, (HEIGHT, WIDTH), args.world_version)


def score(suite: str, images: np.ndarray, pairs: dict) -> float:
    """The suite's colour error of ``images`` (n, H, W, 3) against the truth, averaged over pairs."""
    errors = []
    for i, image in enumerate(images):
        if suite == "scene":
            errors.append(metrics.transferable_colour_error(
                image, pairs["truth"][i], pairs["target_labels"][i], pairs["exemplar_labels"][i]))
        else:
            shared = metrics.shared_instances(pairs["target_instances"][i], pairs["exemplar_instances"][i])
            errors.append(metrics.instance_colour_error(image, pairs["truth"][i], pairs["target_instances"][i], shared))
    return float(np.mean(errors))


def class_only_images(suite: str, pairs: dict) -> np.ndarray:
    """The class-only matcher's outputs: units are classes (scene) or instances (crop)."""
    units = pairs["target_labels"] if suite == "scene" else pairs["target_instances"]
    return np.stack([metrics.class_only_image(pairs["truth"][i], pairs["target_labels"][i], units[i],
                                              pairs["exemplar_image"][i], pairs["exemplar_labels"][i])
                     for i in range(len(units))])  # fmt: skip


@torch.no_grad()
def vae_round_trip(vae: AutoencoderKL, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """Encode (posterior mode, as the pipeline does) and decode: (n, H, W, 3) uint8 both ways."""
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i:i + batch]).permute(0, 3, 1, 2).to(vae.dtype) / 127.5 - 1.0
        y = vae.decode(vae.encode(x).latent_dist.mode()).sample.float().clamp(-1, 1)
        out.append(((y + 1.0) * 127.5).round().permute(0, 2, 3, 1).to(torch.uint8).numpy())
    return np.concatenate(out)


def render_mode(pipe, pairs: dict, mode: str, args, beta: float = 5.0, oracle: bool = False) -> np.ndarray:
    """(n, H, W, 3) uint8 outputs; each target uses its own exemplar (or its truth) and seed."""
    outputs = []
    for i in range(0, len(pairs["seed"]), args.batch):
        rows = slice(i, i + args.batch)
        kwargs = {}
        if mode != "none":
            images, labels = ("truth", "target_labels") if oracle else ("exemplar_image", "exemplar_labels")
            kwargs = dict(exemplar_images=list(pairs[images][rows]), exemplar_labels=list(pairs[labels][rows]))
        images = pipe(
            list(pairs["target_labels"][rows]),
            seeds=[int(s) for s in pairs["seed"][rows]],
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


def contact_sheet(pairs: dict, outputs: dict[str, np.ndarray], rows: int, path: Path) -> None:
    lines = []
    for i in range(min(rows, len(pairs["seed"]))):
        cells = [train_ids_to_colors(pairs["target_labels"][i]), pairs["exemplar_image"][i]]
        cells += [outputs[m][i] for m in MODES] + [pairs["truth"][i]]
        gap = np.full((cells[0].shape[0], 2, 3), 255, np.uint8)
        lines.append(np.concatenate([x for c in cells for x in (c, gap)][:-1], axis=1))
        lines.append(np.full((2, lines[-1].shape[1], 3), 255, np.uint8))
    sheet = np.concatenate(lines[:-1])
    Image.fromarray(sheet).resize((sheet.shape[1] * 2, sheet.shape[0] * 2), Image.NEAREST).save(path)


def floors(test: dict[str, dict], vae: AutoencoderKL) -> dict[str, float]:
    """The model-free class-only floors, the untransferable share and the VAE floors."""
    scene, crop = test["scene"], test["crop"]
    return {
        "scene_class_only_floor": score("scene", class_only_images("scene", scene), scene),
        "crop_class_only_floor": score("crop", class_only_images("crop", crop), crop),
        "scene_untransferable_share": float(np.mean([metrics.untransferable_share(t, e) for t, e in
                                                     zip(scene["target_labels"], scene["exemplar_labels"])])),
        "vae_floor": score("crop", vae_round_trip(vae, crop["truth"]), crop),
        "scene_vae_floor": score("scene", vae_round_trip(vae, scene["truth"]), scene),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="16 test pairs and 8 val pairs per suite, a pool "
                        "of 200, shorter segmenter training")  # fmt: skip
    parser.add_argument("--world-version", type=int, default=1, choices=WORLD_VERSIONS)
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--pairs", type=int, default=64, help="test pairs per suite")
    parser.add_argument("--val-pairs", type=int, default=16, help="val pairs per suite (beta, model choices)")
    parser.add_argument("--pool", type=int, default=1000, help="train frames the scene suite retrieves from")
    parser.add_argument("--betas", type=float, nargs="+", default=[1.0, 2.5, 5.0, 10.0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--batch", type=int, default=8, help="targets per pipeline call")
    parser.add_argument("--floors-only", action="store_true", help="floors and share only; no diffusion")
    parser.add_argument("--skip-miou", action="store_true", help="no world segmenter, no mIoU")
    parser.add_argument("--segmenter-steps", type=int, default=3000)
    add_shape_arguments(parser, prefix="segmenter-")
    parser.add_argument("--segmenter-batch", type=int, default=8)
    parser.add_argument("--cache", default="out/bench_cache", help="where the trained segmenter is kept")
    parser.add_argument("--sheets", default="bench", help="folder of the contact sheets")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--exemplar-path", choices=EXEMPLAR_PATHS, default=DEFAULT_EXEMPLAR_PATH,
                        help="how exemplar rows start and move (amadapter.pipelines.exemplar_start)")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.val_pairs, args.pool, args.segmenter_steps = 16, 8, 200, 600
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    result: dict = {"world_version": args.world_version, "pairs": args.pairs, "val_pairs": args.val_pairs}

    with tempfile.TemporaryDirectory() as workdir:
        test = {s: suite_pairs(s, "test", args.pairs, args, Path(workdir)) for s in SUITES}
        val = {s: suite_pairs(s, "val", args.val_pairs, args, Path(workdir)) for s in SUITES}
    vae = AutoencoderKL.from_pretrained(Path(args.model) / "vae").eval().float()
    result.update({k: round(v, 4 if k.endswith("share") else 2) for k, v in floors(test, vae).items()})
    # the VAE floor on val too: VAE variants are chosen there
    result["val_vae_floor"] = round(score("crop", vae_round_trip(vae, val["crop"]["truth"]), val["crop"]), 2)
    print(f"floors: {json.dumps(result)}")
    if not args.floors_only:
        result.update(model_figures(test, val, args))
    result.update(steps=args.steps, guidance=args.guidance, size=[HEIGHT, WIDTH], pool=args.pool, model=args.model,
                  seconds=round(time.perf_counter() - began, 1))  # fmt: skip
    print(json.dumps(result))
    return result


def model_figures(test: dict[str, dict], val: dict[str, dict], args) -> dict:
    """Every mode and the oracle on both suites, beta per suite on its val pairs; mIoU; sheets."""
    pipe = AMAdapterPipeline.from_pretrained(args.model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    figures, outputs = {}, {}
    for suite in SUITES:
        beta_errors = {b: score(suite, render_mode(pipe, val[suite], "categorical", args, b), val[suite])
                       for b in args.betas}  # fmt: skip
        beta = min(beta_errors, key=beta_errors.get)
        print(f"{suite}: categorical beta on val: " + ", ".join(f"{b}: {e:.1f}" for b, e in beta_errors.items()))
        figures[f"{suite}_categorical_beta"] = beta
        # what choices between models or options (e.g. the exemplar path) are made on
        figures[f"{suite}_val_error_am_adapter"] = round(
            score(suite, render_mode(pipe, val[suite], "am_adapter", args), val[suite]), 2)
        outputs[suite] = {}
        for mode in MODES:
            t = time.perf_counter()
            outputs[suite][mode] = render_mode(pipe, test[suite], mode, args, beta)
            figures[f"{suite}_error_{mode}"] = round(score(suite, outputs[suite][mode], test[suite]), 2)
            print(f"{suite} {mode}: colour error {figures[f'{suite}_error_{mode}']} ({time.perf_counter() - t:.0f} s)")
        oracle = render_mode(pipe, test[suite], "am_adapter", args, oracle=True)
        figures[f"{suite}_oracle"] = round(score(suite, oracle, test[suite]), 2)
        print(f"{suite} oracle (its ground truth as the exemplar, am_adapter): {figures[f'{suite}_oracle']}")
        contact_sheet(test[suite], outputs[suite], 8, Path(args.sheets) / f"appearance_{suite}_v{args.world_version}.png")
    if not args.skip_miou:
        segmenter = load_or_train(args.cache, args.segmenter_steps, args.segmenter_batch, (HEIGHT, WIDTH),
                                  version=args.world_version, shape=shape_from(args, "segmenter-"))
        labels = np.concatenate([test[s]["target_labels"] for s in SUITES])
        for mode in MODES:
            predicted = segment(segmenter, np.concatenate([outputs[s][mode] for s in SUITES]))
            figures[f"miou_{mode}"] = round(mean_iou(predicted, labels), 4)
        truth = segment(segmenter, np.concatenate([test[s]["truth"] for s in SUITES]))
        figures["miou_ground_truth"] = round(mean_iou(truth, labels), 4)
        figures["segmenter_world_version"] = args.world_version
    for suite, other in (("scene", "augmented"), ("crop", "augmented"), ("crop", "categorical")):
        figures[f"{suite}_ratio_am_vs_{other}"] = round(figures[f"{suite}_error_am_adapter"] / figures[f"{suite}_error_{other}"], 3)
    return figures


if __name__ == "__main__":
    main()
