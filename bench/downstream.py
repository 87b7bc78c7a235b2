"""Does the synthetic data help a segmenter? Five arms on the procedural world.

    python -m bench.downstream [--quick] [--seeds N] [--cache DIR]

The situation of a team with few labelled photos:

- real set: R world photos with labels (train split, seeds 0..R-1);
- synthetic set: S samples made by the augment job itself (``jobs.augment.run``:
  Beam graph, retrieval, shards) for S new train-split layouts (seeds R..R+S-1), with
  the R real photos as the exemplar pool and the bundled model;
- filtered synthetic set: the same job with the quality filter
  (``--filter-segmenter``): the filter is the arms' segmenter trained on the R real
  photos alone (seed ``FILTER_SEED``, not an arm seed), its reference losses measured
  on the same photos (the exemplar pool: the job's default), margin 1.25, min-kept 0.5;
- ideal set: the exact world renders of the same S layouts in the styles of the
  exemplars the job retrieved for them (what perfect synthesis would give).

Arms (``ARMS``), each ``SmallSegmenter`` trained from scratch by
``jobs.train_segmenter.train`` (shards streamed with the project's reader, real frames
read from the exported Cityscapes-layout root, one of each in turn until a source runs
out: an epoch is the union of both sets) with the
same width, steps, batch size and learning rate, over ``--seeds`` seeds:
``real``, ``real_synthetic``, ``real_synthetic_filtered``, ``synthetic``,
``real_ideal``. Evaluation: mIoU (``bench.world_segmenter.mean_iou``) on held-out
test-split world photos (unseen layouts and styles).

Synthetic shards are cached under ``--cache`` (default ``~/runs/downstream``) in
folders keyed by a hash of everything that makes them (world sizes, model checkpoint
hash, job options, filter model hash): a rerun finds them finished and the job renders
nothing (its own resume rule). The filter segmenter is cached the same way.
Writes ``bench/downstream.png`` (mIoU per arm, mean and spread over seeds) and
``bench/downstream_samples.png`` (target labels | synthetic | filtered labels |
ideal). The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import os
import re
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from safetensors.torch import load_file

from amadapter import world
from amadapter.io.sample_format import decode_sample
from amadapter.models.segmenter import SmallSegmenter
from amadapter.world.export import export_world
from bench.downstream_plot import plot_arms, sample_sheet
from bench.world_segmenter import mean_iou, segment
from jobs.augment import run as run_augment
from jobs.train_segmenter import train
from pipeline.augment_graph import DEFAULT_MODEL_DIR
from storage.fingerprint import FingerprintMismatchError, checkpoint_sha256
from storage.records import Sample
from storage.shards import write_shard

ARMS = ("real", "real_synthetic", "real_synthetic_filtered", "synthetic", "real_ideal")
SIZE = (64, 128)  # the bundled model's trained size
FILTER_SEED = 1000  # the filter segmenter's training seed (the arms use 0..seeds-1)
SHARD_SIZE = 32  # S=64 gives 2 shards: one per DataLoader worker
WIDTH = 16  # SmallSegmenter width: about 0.12 M parameters
FULL = dict(real=64, synthetic=256, test=256, seeds=3, steps=500, ddim_steps=20)
QUICK = dict(real=64, synthetic=64, test=128, seeds=2, steps=100, ddim_steps=10)
FRAME = re.compile(r"world_(\d{6})_(\d{6})_")  # an exported frame's layout and style seeds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"smaller: {QUICK}")
    for name, value in FULL.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                            help=f"default {value} ({QUICK[name]} with --quick)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=8, help="segmenter batch")
    parser.add_argument("--lr", type=float, default=2e-3, help="segmenter learning rate")
    parser.add_argument("--exemplar-topk", type=int, default=4,
                        help="the job's seeded draw among the best k exemplars (style diversity)")  # fmt: skip
    parser.add_argument("--beam-workers", type=int, default=2, help="DirectRunner processes")
    parser.add_argument("--loader-workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the trainer")
    parser.add_argument("--cache", default=os.path.expanduser("~/runs/downstream"))
    parser.add_argument("--plot", default="bench/downstream.png")
    parser.add_argument("--sheet", default="bench/downstream_samples.png")
    args = parser.parse_args(argv)
    config = {k: getattr(args, k) if getattr(args, k) is not None else (QUICK if args.quick else FULL)[k]
              for k in FULL}  # fmt: skip
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    cache = Path(args.cache)
    phase = Phases()
    train_options = dict(size=SIZE, steps=config["steps"], batch_size=args.batch_size,
                         workers=args.loader_workers, lr=args.lr)  # fmt: skip
    with phase("data"):
        real_root, target_root = export_inputs(cache, config["real"], config["synthetic"])
        test = test_set(config["test"])
    job = JobSetup(real_root, target_root, config, args)
    with phase("synthesis"):
        synthetic = job.synthesize(cache)
    with phase("filter_segmenter"):
        filter_dir = filter_segmenter(cache, real_root, config, train_options)
    with phase("filtered_synthesis"):
        filtered = job.synthesize(cache, filter_dir)
    with phase("ideal"):
        ideal = write_ideal_shards(synthetic["output"])

    real = (str(real_root), "cityscapes", "train")
    sources = {
        "real": (None, real),
        "real_synthetic": (synthetic["pattern"], real),
        "real_synthetic_filtered": (filtered["pattern"], real),
        "synthetic": (synthetic["pattern"], None),
        "real_ideal": (ideal, real),
    }
    with phase("training"):
        scores, steps_run = train_arms(sources, config["seeds"], cache, train_options, test)

    plot_arms(scores, Path(args.plot), quick=args.quick)
    sample_sheet(read_samples(synthetic["pattern"]), read_samples(filtered["pattern"]),
                 read_samples(ideal), Path(args.sheet))  # fmt: skip
    result = summarize(scores, config, synthetic, filtered)
    result.update(phase.to_json())
    result.update(
        training_step_wall_s=round(phase.seconds["training"]["wall"] / steps_run, 3),
        training_step_main_cpu_s=round(phase.seconds["training"]["main_cpu"] / steps_run, 3),
        quiet_estimate_s=round(phase.quiet_estimate(), 1),
        load_average=round(os.getloadavg()[0], 2),  # what else ran on the machine meanwhile
        quick=args.quick,
        cache=str(cache),
        seconds=round(time.perf_counter() - began, 1),
    )
    print(json.dumps(result))
    return result


class Phases:
    """Wall and CPU seconds per phase. CPU (``os.times``: this process, plus its children
    once they have exited: Beam's worker processes, DataLoader workers) says what a phase
    costs whatever else the shared machine runs; ``main_cpu`` is this process alone (the
    trainer's steps, which run one after another)."""

    def __init__(self):
        self.seconds: dict[str, dict] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        wall, before = time.perf_counter(), os.times()
        yield
        after = os.times()
        main = after.user + after.system - before.user - before.system
        children = (after.children_user + after.children_system
                    - before.children_user - before.children_system)  # fmt: skip
        self.seconds[name] = {"wall": time.perf_counter() - wall, "cpu": main + children,
                              "main_cpu": main}  # fmt: skip

    def quiet_estimate(self, cores: int = 2) -> float:
        """Wall seconds on an otherwise idle machine with ``cores`` cores: the CPU of each
        phase spread over the cores, but never less than its serial part (``main_cpu``)."""
        return sum(max(p["cpu"] / cores, p["main_cpu"]) for p in self.seconds.values())

    def to_json(self) -> dict:
        return {f"{name}_{kind}_s": round(max(value, 0.0), 1)
                for name, phase in self.seconds.items() for kind, value in phase.items()}  # fmt: skip


def train_arms(sources: dict, seeds: int, cache: Path, train_options: dict, test) -> tuple:
    """Every arm for every seed: {arm: [test mIoU per seed]} and the steps trained."""
    scores = {arm: [] for arm in ARMS}
    steps_run = 0
    for seed in range(seeds):
        for arm in ARMS:
            out = cache / "arms" / f"{arm}-{seed}"
            pattern, real_source = sources[arm]
            result = train(pattern, real_source, seed=seed, out=str(out), **train_options)
            steps_run += result["steps"]
            scores[arm].append(evaluate(out, *test))
            print(f"{arm} seed {seed}: mIoU {scores[arm][-1]:.4f} "
                  f"(seen {result['seen']}, {result['seconds']:.0f} s)", flush=True)  # fmt: skip
    return scores, steps_run


def export_inputs(cache: Path, real: int, synthetic: int) -> tuple[Path, Path]:
    """The R real photos (the real set and the exemplar pool) and the S target layouts,
    Cityscapes layout, train split (disjoint seeds); exported once per size."""
    root = cache / f"world-{real}-{synthetic}-{SIZE[0]}x{SIZE[1]}"
    real_root, target_root = root / "real", root / "targets"
    if not (root / "done").is_file():
        export_world(real_root, real, "train", *SIZE)
        export_world(target_root, synthetic, "train", *SIZE, start=real)
        (root / "done").write_text("exported\n")
    return real_root, target_root


def test_set(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out test-split world photos (unseen layouts and styles) and their labels."""
    scenes = [world.scene(s, s, *SIZE) for s in world.split_seeds("test", n)]
    return np.stack([p for p, _ in scenes]), np.stack([l for _, l in scenes])


class JobSetup:
    """The augment job's command line for this benchmark, and where its output is cached."""

    def __init__(self, real_root: Path, target_root: Path, config: dict, args):
        self.options = [
            "--labels", str(target_root), "--split", "train",
            "--exemplars", str(real_root), "--exemplars-split", "train",
            "--model", DEFAULT_MODEL_DIR, "--steps", str(config["ddim_steps"]),
            "--exemplar-topk", str(args.exemplar_topk), "--shard-size", str(SHARD_SIZE),
            "--preview-count", "8",
        ]  # fmt: skip
        # how the job runs, not what it makes (the same bytes with any worker count)
        self.execution = [
            "--runner=DirectRunner",
            "--direct_running_mode=multi_processing",
            f"--direct_num_workers={args.beam_workers}",
        ]
        self.model_sha256 = checkpoint_sha256(DEFAULT_MODEL_DIR)

    def synthesize(self, cache: Path, filter_dir: Path | None = None) -> dict:
        """Run the job (or find its finished shards: the job's own resume) and return the
        output folder, its shard pattern and the job's summary."""
        options = list(self.options)
        if filter_dir is not None:
            options += ["--filter-segmenter", str(filter_dir)]
        key = {"options": options, "model_sha256": self.model_sha256,
               "filter_sha256": checkpoint_sha256(str(filter_dir)) if filter_dir else None}  # fmt: skip
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        name = "synthetic-filtered" if filter_dir else "synthetic"
        output = cache / f"{name}-{digest}"
        argv = self.execution + options + ["--output", str(output)]
        try:
            summary = run_augment(argv)
        except FingerprintMismatchError as error:  # rendered by an older version of the job
            print(f"{name}: the cached shards differ from this job's ({error}); rendering again")
            summary = run_augment(argv + ["--overwrite"])
        print(f"{name}: {summary.lines()[0]}; rendered {summary.synthesized} "
              f"in {summary.seconds:.0f} s -> {output}", flush=True)  # fmt: skip
        return {"output": output, "pattern": str(output / "aug-*.tar"), "summary": summary}


def filter_segmenter(cache: Path, real_root: Path, config: dict, train_options: dict) -> Path:
    """The filter: the arms' segmenter trained on the R real photos only, cached."""
    key = json.dumps({"real": config["real"], **train_options, "seed": FILTER_SEED}, sort_keys=True)
    out = cache / f"filter-segmenter-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if not (out / "segmenter.safetensors").is_file():
        train(None, (str(real_root), "cityscapes", "train"), seed=FILTER_SEED, out=str(out),
              **train_options)  # fmt: skip
    return out


def write_ideal_shards(synthetic: Path) -> str:
    """For each synthetic sample, the world render of its target layout in its exemplar's
    style, with the same key and label, as shards of the same size (PNG: exact)."""
    output = synthetic.parent / f"ideal-{synthetic.name}"
    if not (output / "done").is_file():
        samples = []
        for key, (_, label, meta) in sorted(read_samples(str(synthetic / "aug-*.tar")).items()):
            layout_seed = int(FRAME.search(os.path.basename(meta["source"])).group(1))
            style_seed = int(FRAME.search(os.path.basename(meta["exemplar"]["photo"])).group(2))
            image = world.render(world.layout(layout_seed, *SIZE), world.style(style_seed))
            samples.append(Sample(key, image, label, {"source": meta["source"]}))
        for index in range(0, len(samples), SHARD_SIZE):
            write_shard(str(output), "ideal", index // SHARD_SIZE,
                        samples[index:index + SHARD_SIZE], image_format="png")  # fmt: skip
        (output / "done").write_text(f"{len(samples)} samples\n")
    return str(output / "ideal-*.tar")


def read_samples(pattern: str) -> dict[str, tuple]:
    """key -> (image, label, meta) of every sample of the shards matching ``pattern``."""
    urls = sorted(glob.glob(pattern))
    return {key: rest for key, *rest in map(decode_sample, wds.WebDataset(urls, shardshuffle=False))}


def evaluate(out: Path, photos: np.ndarray, labels: np.ndarray) -> float:
    model = SmallSegmenter(width=WIDTH)
    model.load_state_dict(load_file(str(out / "segmenter.safetensors")))
    return mean_iou(segment(model.eval(), photos), labels)


def summarize(scores: dict, config: dict, synthetic: dict, filtered: dict) -> dict:
    mean = {arm: statistics.mean(v) for arm, v in scores.items()}
    spread = {arm: statistics.stdev(v) if len(v) > 1 else 0.0 for arm, v in scores.items()}
    gain = mean["real_synthetic"] - mean["real"]
    ideal_gain = mean["real_ideal"] - mean["real"]
    stats = [json.loads(p.read_text()) for p in sorted(filtered["output"].glob("aug-*.stats.json"))]
    kept_labelled = sum(sum(v for k, v in s["class_pixels"].items() if k != "ignore") for s in stats)
    dropped = sum(s["filtered_pixels"] for s in stats)
    result = {f"miou_{arm}": round(mean[arm], 4) for arm in ARMS}
    result.update({f"spread_{arm}": round(spread[arm], 4) for arm in ARMS})
    result.update({f"per_seed_{arm}": [round(v, 4) for v in scores[arm]] for arm in ARMS})
    result.update({
        "gain_real_synthetic": round(gain, 4),
        "gain_real_synthetic_filtered": round(mean["real_synthetic_filtered"] - mean["real"], 4),
        "gain_real_ideal": round(ideal_gain, 4),
        # a share of the ideal gain only where there is one to share
        "gain_vs_ideal": round(gain / ideal_gain, 3) if ideal_gain > 0.005 else None,
        "target_gain_3_points": gain >= 0.03 and gain > max(spread["real"], spread["real_synthetic"]),
        "target_filtered_at_least_unfiltered": mean["real_synthetic_filtered"] >= mean["real_synthetic"],
        "target_half_of_ideal": ideal_gain > 0 and gain >= 0.5 * ideal_gain,
        "seeds": config["seeds"],
        "real_count": config["real"],
        "synthetic_count": synthetic["summary"].written,
        "filtered_synthetic_count": filtered["summary"].written,
        "filtered_samples": filtered["summary"].filtered,
        "filtered_pixel_share": round(dropped / max(dropped + kept_labelled, 1), 4),
        "test_count": config["test"],
        "segmenter_steps": config["steps"],
        "ddim_steps": config["ddim_steps"],
        "size": list(SIZE),
    })  # fmt: skip
    return result


if __name__ == "__main__":
    main()
