"""``jobs.evaluate`` on the procedural world: the demo model's outputs next to what perfect
synthesis would score, in the world segmenter's features (not Inception: these FIDs compare
runs here with each other, never with published figures).

    .venv/bin/python -m jobs.augment --output out/eval-demo --samples-per-label 4 --preview-count 0
    .venv/bin/python -m bench.evaluation [--shards 'out/eval-demo/aug-*.tar'] [--quick]

1. the world segmenter (``bench.world_segmenter``, cached; 3000 steps at 64x128, the one
   ``bench.appearance`` uses) is both the feature space and the layout segmenter;
2. the reference set: unseen test-split world photos (layouts and styles no output has),
   exported in the Cityscapes layout;
3. the ideal outputs: for every output, the world's exact render of its target layout in
   the style of the exemplar it retrieved (what a perfect appearance transfer gives),
   written as shards in the same JPEG format;
4. ``jobs.evaluate`` on the outputs and on the ideal shards against the same reference.

The last line is one JSON object: FID / KID / layout mIoU of both, their ratios, and the
evaluate job's throughput (outputs and reference photos per second, of the slower run).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch

from amadapter import world
from amadapter.data import decoded_samples
from amadapter.world.export import export_world
from bench.world_segmenter import cache_path, load_or_train
from jobs.evaluate import main as evaluate
from storage.records import Sample
from storage.shards import write_shard

SIZE = (64, 128)
SEGMENTER = {"steps": 3000, "batch_size": 8}  # bench.appearance's default: one cached model
REFERENCE_START = 16  # test-split seeds after the 16 the demo's targets use
EXEMPLAR_STEM = re.compile(r"world_(\d+)_(\d+)")  # layout and style seeds of a world frame


def ideal_shard(shards: str, out: Path) -> str:
    """One shard of the exact renders of the outputs' layouts in their exemplars' styles."""
    samples = []
    for key, _, label, meta in decoded_samples(shards):
        style_seed = int(EXEMPLAR_STEM.match(meta["exemplar"]["key"]).group(2))
        photo = world.render(label, world.style(style_seed))
        samples.append(Sample(key, photo, label, {"source": meta["source"], "exemplar": meta["exemplar"]}))
    write_shard(str(out), "ideal", 0, sorted(samples, key=lambda s: s.key))
    return str(out / "ideal-000000.tar")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", default="out/eval-demo/aug-*.tar", help="the augment job's output")
    parser.add_argument("--work", default="out/bench_evaluation", help="reference photos, ideal shards, eval outputs")
    parser.add_argument("--cache", default="out/bench_cache", help="where the world segmenter is cached")
    parser.add_argument("--reference", type=int, default=256, help="unseen real world photos")
    parser.add_argument("--quick", action="store_true", help="64 reference photos")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    reference_count = 64 if args.quick else args.reference
    work = Path(args.work)
    load_or_train(args.cache, SEGMENTER["steps"], SEGMENTER["batch_size"], SIZE)
    segmenter = str(cache_path(args.cache, SEGMENTER["steps"], SEGMENTER["batch_size"], SIZE))
    reference = work / f"reference-{reference_count}"
    export_world(reference, reference_count, "test", *SIZE, start=REFERENCE_START)
    runs = {"outputs": args.shards, "ideal": ideal_shard(args.shards, work / "ideal")}
    results, seconds = {}, []
    for name, shards in runs.items():
        began = time.perf_counter()
        results[name] = evaluate([shards, "--real", str(reference), "--real-split", "test",
                                  "--features", segmenter, "--segmenter", segmenter,
                                  "--out", str(work / f"eval-{name}"), "--threads", str(args.threads)])
        seconds.append(time.perf_counter() - began)
    samples = results["outputs"]["samples"]
    figures = {
        "feature_space": results["outputs"]["fid"]["feature_extractor"],
        "samples": samples,
        "reference_count": reference_count,
        **{f"fid_{n}": r["fid"]["value"] for n, r in results.items()},
        **{f"kid_{n}": r["kid"]["mean"] for n, r in results.items()},
        **{f"kid_std_{n}": r["kid"]["std"] for n, r in results.items()},
        **{f"miou_{n}": r["layout"]["miou"] for n, r in results.items()},
        "evaluate_seconds": sorted(seconds),
        "images_per_second": (samples + reference_count) / max(seconds),  # of the slower run
    }
    figures["fid_ratio_outputs_to_ideal"] = figures["fid_outputs"] / figures["fid_ideal"]
    for name in runs:
        print(f"{name:>8}: FID {figures[f'fid_{name}']:.3f}, KID {figures[f'kid_{name}']:.4f}, "
              f"layout mIoU {figures[f'miou_{name}']:.3f}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
