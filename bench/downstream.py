"""Labels from one domain, looks from another: do the job's images help a segmenter there,
against what a team would use instead?

    python -m bench.downstream [--quick] [--seeds N] [--cache DIR]

The setting (``bench.domain_transfer_data``): R labelled day photos (the real set, R = 64
and 256), a pool of unlabelled night photos, and a segmenter that must work at night
(test: night photos of unseen layouts and styles; val: other night photos). Arms, each
a segmenter trained from scratch the same way (``bench.arm_training``: the real frames
interleaved one for one with the arm's synthetic samples, the same steps), ``--seeds``
seeds each:

- ``real``: the R photos alone;
- ``real_jitter``, ``real_fda``, ``real_histogram``: the R photos through photometric
  jitter, or adapted towards the night pool photos by albumentations' ``FDA`` or
  ``HistogramMatching`` (``bench.domain_baselines``): the cheap tools;
- ``real_job_pseudo``: plus the augment job's renders of the R label maps with night
  exemplars, the pool labelled by a segmenter trained on the R photos alone
  (``--pool-labels-from``: what a team can do);
- ``real_job_true``: the same with the pool's true labels (the upper bound of labelling);
- ``real_job_filtered``: the pseudo job with the quality filter (that segmenter again,
  reference losses on the R labelled photos);
- ``real_job_categorical``, ``real_job_augmented``: the pseudo job in those modes
  (``--mode``: what the learned adapter adds, downstream);
- ``real_ideal``: the exact world renders of the R layouts in the styles of the
  exemplars the pseudo job retrieved (what perfect synthesis would give).

Choices are made on val, in this order, before any test figure: the steps (the ``real``
arm's curve on day val photos, the domain it learns from, at each R: the first evaluated
step within ``CONVERGED_WITHIN`` of the curve's best; on night val a day-trained
segmenter's curve is flat noise, so it cannot say when training is done), the segmenter
(small vs SegFormer MiT-b0 shape, from scratch: the better on night val at its converged
step), then each baseline's strength (a grid at the smallest R, one seed, night val). The job's own settings
(filter margin 1.25 and min-kept 0.5, ``--exemplar-topk 4``) are its defaults, not
tuned (each would mean rendering again). Test mIoU is computed once, for the final arms.

Everything is cached under ``--cache`` (default ``~/runs/downstream``), keyed by what
makes it, so a rerun resumes: exports, segmenters (``result.json`` per training), indexes,
the job's outputs (its own resume rule). Writes ``bench/downstream.png`` and
``bench/downstream_samples.png``; the last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from amadapter.evaluation.confusion import confusion_matrix, mean_iou
from amadapter.retrieval.store import IndexStore
from bench.arm_training import ArmRun, run_arms
from bench.domain_baselines import BASELINES, Baseline
from bench.domain_transfer_data import (
    DOMAIN_A, DOMAIN_B, SIZE, eval_set, pool, pool_photo_paths, real_set, write_ideal_shards,
)  # fmt: skip
from bench.downstream_plot import plot_arms, sample_sheet
from bench.shard_samples import read_samples
from jobs.augment import run as run_augment
from jobs.build_index import main as build_index
from pipeline.augment_graph import DEFAULT_MODEL_DIR
from storage.fingerprint import FingerprintMismatchError, checkpoint_sha256

BASELINE_ARMS = tuple(f"real_{kind}" for kind in BASELINES)
JOB_ARMS = ("real_job_pseudo", "real_job_true", "real_job_filtered", "real_job_categorical", "real_job_augmented")
ARMS = ("real", *BASELINE_ARMS, *JOB_ARMS, "real_ideal")
ARCHS = ("small", "segformer")
STRENGTHS = {"jitter": (0.3, 0.6), "fda": (0.02, 0.1), "histogram": (0.5, 1.0)}  # the val grid
CONVERGED_WITHIN = 0.01  # mIoU: a curve has converged once it is this close to its best
SELECT_SEED, LABELLER_SEED = 0, 1000  # the labeller's seed is no arm's
FULL = dict(real=(64, 256), pool=1000, val=128, test=256, seeds=3, max_steps=300, val_every=50, ddim_steps=10)
QUICK = dict(real=(64,), pool=200, val=64, test=128, seeds=2, max_steps=100, val_every=50, ddim_steps=5)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"smaller: {QUICK}")
    parser.add_argument("--seeds", type=int, default=None, help=f"default {FULL['seeds']} ({QUICK['seeds']} quick)")
    parser.add_argument("--arch", choices=("auto", *ARCHS), default="auto",
                        help="the segmenter; auto: the better on val")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=8, help="segmenter batch")
    parser.add_argument("--processes", type=int, default=2, help="segmenter trainings at once (1 thread each)")
    parser.add_argument("--beam-workers", type=int, default=2, help="the job's DirectRunner processes")
    parser.add_argument("--cache", default=os.path.expanduser("~/runs/downstream"))
    parser.add_argument("--plot", default="bench/downstream.png")
    parser.add_argument("--sheet", default="bench/downstream_samples.png")
    args = parser.parse_args(argv)
    config = dict(QUICK if args.quick else FULL)
    config["seeds"] = args.seeds or config["seeds"]
    began, cache, phase = time.perf_counter(), Path(args.cache), Phases()
    with phase("data"):
        reals = {count: real_set(cache, count) for count in config["real"]}
        pool_root = pool(cache, config["pool"])
        references = tuple(pool_photo_paths(pool_root))
    bench = Benchmark(cache, config, args, references)
    with phase("selection"):
        choice = bench.select(reals)
    results, samples = {}, None
    for count, real_root in reals.items():
        with phase(f"synthesis_{count}"):
            job = bench.synthesize(count, real_root, pool_root, choice)
        with phase(f"training_{count}"):
            scores = bench.train_arms(count, real_root, choice, job)
        results[count] = summarize(scores, job, choice, count)
        samples = samples or (job, real_root)
    plot_arms({count: r["scores"] for count, r in results.items()}, Path(args.plot), quick=args.quick)
    sheet_rows(samples[0], samples[1], choice["baselines"]["fda"], Path(args.sheet))
    first, *others = config["real"]
    result = {"seeds": config["seeds"], "real_count": first, **results[first]["figures"]}
    result.update({f"real_{count}": results[count]["figures"] for count in others})
    result.update(
        choices=choice["report"],
        domains=[DOMAIN_A, DOMAIN_B],
        pool_count=config["pool"],
        val_count=config["val"],
        test_count=config["test"],
        ddim_steps=config["ddim_steps"],
        size=list(SIZE),
        **phase.to_json(),
        quiet_estimate_s=round(phase.quiet_estimate(), 1),
        load_average=round(os.getloadavg()[0], 2),  # what else ran on the machine meanwhile
        quick=args.quick,
        cache=str(cache),
        seconds=round(time.perf_counter() - began, 1),
    )
    print(json.dumps(result))
    return result


class Benchmark:
    """The benchmark's steps over one cache and config."""

    def __init__(self, cache: Path, config: dict, args, references: tuple[str, ...]):
        self.cache, self.config, self.args, self.references = cache, config, args, references

    def run(self, name: str, real_root: Path, steps: int, arch: str, seed: int, score_on, **sources) -> ArmRun:
        """An ``ArmRun`` whose folder is keyed by everything that makes it."""
        fields = dict(real_root=str(real_root), size=SIZE, steps=steps, arch=arch, batch_size=self.args.batch_size,
                      seed=seed, **sources)  # fmt: skip
        digest = hashlib.sha256(repr(sorted(fields.items())).encode()).hexdigest()[:12]
        return ArmRun(arm=name, out=str(self.cache / "segmenters" / f"{name}-{digest}"), score_on=score_on, **fields)

    def curve(self, arch: str, real_root: Path) -> ArmRun:
        """The ``real`` arm's val curves (day and night val every ``val_every`` steps)."""
        run = self.run("real-curve", real_root, self.config["max_steps"], arch, SELECT_SEED, self.sets("val_day", "val"))
        return dataclasses.replace(run, val_every=self.config["val_every"])

    def sets(self, *names: str) -> tuple:
        """The named evaluation sets: val and test (night), val_day (the real set's domain)."""
        sets = {"val": ("val", self.config["val"], DOMAIN_B), "val_day": ("val", self.config["val"], DOMAIN_A),
                "test": ("test", self.config["test"], DOMAIN_B)}  # fmt: skip
        return tuple((name, *sets[name]) for name in names)

    def select(self, reals: dict[int, Path]) -> dict:
        """The segmenter, its steps per R and the baselines' strengths, all on val: steps
        where the ``real`` arm's day-val curve converges (training has learnt what its data
        teaches), the arch by night val at those steps, the strengths by night val."""
        first = min(reals)
        archs = ARCHS if self.args.arch == "auto" else (self.args.arch,)
        curves = dict(zip(archs, run_arms([self.curve(a, reals[first]) for a in archs], eval_set, self.args.processes)))
        at_convergence = {a: dict(curves[a]["curve"])[converged_step(curves[a]["curve"])]["val"] for a in archs}
        arch = max(archs, key=at_convergence.__getitem__)
        per_count = {first: curves[arch]}
        others = [c for c in sorted(reals) if c != first]
        per_count.update(zip(others, run_arms([self.curve(arch, reals[c]) for c in others], eval_set, self.args.processes)))
        steps = {count: converged_step(result["curve"]) for count, result in per_count.items()}
        grid = [(kind, s) for kind in BASELINES for s in STRENGTHS[kind]]
        grid_runs = [self.run(f"real_{kind}", reals[first], steps[first], arch, SELECT_SEED, self.sets("val"),
                              transform=Baseline(kind, s, self.references)) for kind, s in grid]  # fmt: skip
        grid_val = {item: r["miou"]["val"] for item, r in zip(grid, run_arms(grid_runs, eval_set, self.args.processes))}
        baselines = {kind: Baseline(kind, max(STRENGTHS[kind], key=lambda s: grid_val[kind, s]), self.references)
                     for kind in BASELINES}  # fmt: skip
        report = {
            "arch": arch,
            "arch_night_val_at_convergence": at_convergence,
            "curves": {f"{a}_{first}": curves[a]["curve"] for a in archs}
            | {f"{arch}_{c}": per_count[c]["curve"] for c in others},
            "steps": {str(c): s for c, s in steps.items()},
            "baseline_val": {f"{kind}_{s:g}": round(v, 4) for (kind, s), v in grid_val.items()},
            "baselines": {kind: b.describe() for kind, b in baselines.items()},
        }
        print(f"selected on val: {json.dumps(report)}", flush=True)
        return {"arch": arch, "steps": steps, "baselines": baselines, "report": report}

    def synthesize(self, count: int, real_root: Path, pool_root: Path, choice: dict) -> dict:
        """The labeller, the two indexes and the job's five runs for the R = ``count`` set."""
        arch, steps = choice["arch"], choice["steps"][count]
        labeller = self.run("labeller", real_root, steps, arch, LABELLER_SEED, self.sets("val_day", "val"))
        (labeller_result,) = run_arms([labeller], eval_set, 1)
        indexes = {
            "pseudo": self.index(pool_root, f"index-{pool_root.name}-{Path(labeller.out).name}", labeller.out),
            "true": self.index(pool_root, f"index-{pool_root.name}-true", None),
        }
        job = JobSetup(real_root, self.config["ddim_steps"], self.args.beam_workers)
        filtered = ["--filter-segmenter", labeller.out, "--filter-reference", str(real_root),
                    "--filter-reference-split", "train"]  # fmt: skip
        outputs = {
            "real_job_pseudo": job.synthesize(self.cache, indexes["pseudo"]),
            "real_job_true": job.synthesize(self.cache, indexes["true"]),
            "real_job_filtered": job.synthesize(self.cache, indexes["pseudo"], filtered),
            "real_job_categorical": job.synthesize(self.cache, indexes["pseudo"], ["--mode", "categorical"]),
            "real_job_augmented": job.synthesize(self.cache, indexes["pseudo"], ["--mode", "augmented"]),
        }
        pseudo = outputs["real_job_pseudo"]["output"]
        ideal = write_ideal_shards(pseudo, pseudo.parent / f"ideal-{pseudo.name}")
        return {"outputs": outputs, "ideal": ideal, "labeller": labeller_result,
                "pool_label_miou": pool_label_miou(indexes["pseudo"])}  # fmt: skip

    def index(self, pool_root: Path, name: str, labeller: str | None) -> Path:
        """The pool's index (the job's own update rule: a finished one is read, not rebuilt)."""
        output = self.cache / name
        argv = ["--pool", str(pool_root), "--dataset", "cityscapes", "--split", "train", "--output", str(output)]
        build_index(argv + (["--pool-labels-from", labeller] if labeller else []))
        return output

    def train_arms(self, count: int, real_root: Path, choice: dict, job: dict) -> dict[str, list[dict]]:
        """Every arm for every seed, scored on test and val once trained: {arm: [result per seed]}."""
        arch, steps = choice["arch"], choice["steps"][count]
        sources = {arm: {"transform": choice["baselines"][arm[len("real_"):]]} for arm in BASELINE_ARMS}
        sources |= {arm: {"shards": job["outputs"][arm]["pattern"]} for arm in JOB_ARMS}
        sources |= {"real": {}, "real_ideal": {"shards": job["ideal"]}}
        runs = [self.run(arm, real_root, steps, arch, seed, self.sets("test", "val"), **sources[arm])
                for seed in range(self.config["seeds"]) for arm in ARMS]  # fmt: skip
        scores: dict[str, list[dict]] = {arm: [] for arm in ARMS}
        for run, result in zip(runs, run_arms(runs, eval_set, self.args.processes)):
            scores[run.arm].append(result)
            print(f"R={count} {run.arm} seed {run.seed}: test mIoU {result['miou']['test']:.4f} "
                  f"(val {result['miou']['val']:.4f}, {result['seconds']:.0f} s)", flush=True)  # fmt: skip
        return scores


def converged_step(curve: list[list], name: str = "val_day") -> int:
    """The first evaluated step within ``CONVERGED_WITHIN`` of the best mIoU of the ``name``
    curve (day val: the domain the ``real`` arm learns from)."""
    best = max(values[name] for _, values in curve)
    return next(step for step, values in curve if values[name] >= best - CONVERGED_WITHIN)


def pool_label_miou(index: Path) -> float:
    """How right the labeller's predicted pool maps are: mIoU against the pool's true labels
    (the pool is exported with them; the job never reads them in the pseudo arms)."""
    store = IndexStore(str(index))
    predicted, photos = ([v for chunk in store.read_column(c) for v in chunk.to_pylist()]
                         for c in ("label_path", "photo_path"))  # fmt: skip
    confusion = sum(
        confusion_matrix(np.asarray(Image.open(label)), np.asarray(Image.open(true_labels(photo))))
        for label, photo in zip(predicted, photos)
    )
    return round(mean_iou(confusion), 4)


def true_labels(photo_path: str) -> str:
    """The Cityscapes-layout label map of an exported photo."""
    return photo_path.replace("/leftImg8bit/", "/gtFine/").replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png")


class JobSetup:
    """The augment job's command line for this benchmark, and where its output is cached."""

    def __init__(self, real_root: Path, ddim_steps: int, beam_workers: int):
        self.options = [
            "--labels", str(real_root), "--split", "train", "--model", DEFAULT_MODEL_DIR,
            "--steps", str(ddim_steps), "--exemplar-topk", "4", "--shard-size", "32", "--preview-count", "0",
        ]  # fmt: skip
        # how the job runs, not what it makes (the same bytes with any worker count)
        self.execution = ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                          f"--direct_num_workers={beam_workers}"]  # fmt: skip
        self.model_sha256 = checkpoint_sha256(DEFAULT_MODEL_DIR)

    def synthesize(self, cache: Path, index: Path, extra: list[str] = ()) -> dict:
        """Run the job (or find its finished shards: the job's own resume) and return the
        output folder, its shard pattern and the job's summary."""
        options = self.options + ["--index", str(index), *extra]
        key = {"options": options, "model_sha256": self.model_sha256,
               "index": json.loads((index / "index.json").read_text()).get("pool_labels")}  # fmt: skip
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        output = cache / f"job-{digest}"
        argv = self.execution + options + ["--output", str(output)]
        try:
            summary = run_augment(argv)
        except FingerprintMismatchError as error:  # rendered by an older version of the job
            print(f"{output.name}: the cached shards differ from this job's ({error}); rendering again")
            summary = run_augment(argv + ["--overwrite", "true"])
        print(f"job {' '.join(extra) or '(am_adapter)'} on {index.name}: {summary.lines()[0]}; rendered "
              f"{summary.synthesized} in {summary.seconds:.0f} s -> {output}", flush=True)  # fmt: skip
        return {"output": output, "pattern": str(output / "aug-*.tar"), "summary": summary}


def summarize(scores: dict[str, list[dict]], job: dict, choice: dict, count: int) -> dict:
    test = {arm: [r["miou"]["test"] for r in results] for arm, results in scores.items()}
    mean = {arm: statistics.mean(v) for arm, v in test.items()}
    std = {arm: statistics.stdev(v) if len(v) > 1 else 0.0 for arm, v in test.items()}
    gain = {arm: mean[arm] - mean["real"] for arm in ARMS}
    best_baseline = max(gain[arm] for arm in BASELINE_ARMS)
    ideal = gain["real_ideal"]
    figures = {f"miou_{arm}": round(mean[arm], 4) for arm in ARMS}
    figures |= {f"std_{arm}": round(std[arm], 4) for arm in ARMS}
    figures |= {f"gain_{arm}": round(gain[arm], 4) for arm in ARMS if arm != "real"}
    figures |= {f"per_seed_{arm}": [round(v, 4) for v in test[arm]] for arm in ARMS}
    figures |= {f"val_{arm}": round(statistics.mean(r["miou"]["val"] for r in scores[arm]), 4) for arm in ARMS}
    outputs = job["outputs"]
    figures.update({
        "std_max": round(max(std.values()), 4),
        "gain_best_baseline": round(best_baseline, 4),
        "share_of_ideal": round(gain["real_job_pseudo"] / ideal, 3) if ideal > 0.005 else None,
        "target_ideal_gain_0_10": ideal >= 0.10,
        "target_std_max_under_third_of_ideal": max(std.values()) <= ideal / 3,
        "target_pseudo_beats_best_baseline_by_0_02": gain["real_job_pseudo"] >= best_baseline + 0.02,
        "target_share_of_ideal_0_5": ideal > 0 and gain["real_job_pseudo"] >= 0.5 * ideal,
        "target_true_at_least_pseudo": gain["real_job_true"] >= gain["real_job_pseudo"],
        "target_filtered_at_least_unfiltered": mean["real_job_filtered"] >= mean["real_job_pseudo"],
        "labeller_val_miou": job["labeller"]["miou"]["val"],
        "labeller_day_val_miou": job["labeller"]["miou"]["val_day"],
        "pool_label_miou": job["pool_label_miou"],
        "synthetic_count": outputs["real_job_pseudo"]["summary"].written,
        "filtered_samples": outputs["real_job_filtered"]["summary"].filtered,
        "segmenter_steps": choice["steps"][count],
        "training_seconds_per_run": round(statistics.median(r["seconds"] for v in scores.values() for r in v), 1),
    })  # fmt: skip
    return {"scores": test, "figures": figures}


def sheet_rows(job: dict, real_root: Path, fda: Baseline, path: Path, rows: int = 6) -> None:
    """Labels | exemplar | job | ideal | FDA of the real photo, for the first targets by key."""
    synthetic = read_samples(job["outputs"]["real_job_pseudo"]["pattern"])
    ideal = read_samples(job["ideal"])
    lines = []
    for key in sorted(synthetic)[:rows]:
        image, label, meta = synthetic[key]
        exemplar = np.asarray(Image.open(meta["exemplar"]["photo"]).convert("RGB"))
        day = np.asarray(Image.open(real_photo(real_root, meta["source"])).convert("RGB"))
        adapted = fda(day, np.random.default_rng(0))
        lines.append((label, exemplar, image, ideal[key][0], adapted))
    sample_sheet(lines, path)


def real_photo(real_root: Path, label_path: str) -> Path:
    name = Path(label_path).name.split("_gtFine_")[0] + "_leftImg8bit.png"
    return next((real_root / "leftImg8bit").rglob(name))


class Phases:
    """Wall and CPU seconds per phase. CPU (``os.times``: this process, plus its children
    once they have exited: Beam's worker processes, the trainings' processes) says what a
    phase costs whatever else the shared machine runs; ``main_cpu`` is this process alone."""

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
        self.seconds[name] = {"wall": time.perf_counter() - wall, "cpu": main + children, "main_cpu": main}

    def quiet_estimate(self, cores: int = 2) -> float:
        """Wall seconds on an otherwise idle machine with ``cores`` cores: the CPU of each
        phase spread over the cores, but never less than its serial part (``main_cpu``)."""
        return sum(max(p["cpu"] / cores, p["main_cpu"]) for p in self.seconds.values())

    def to_json(self) -> dict:
        return {f"{name}_{kind}_s": round(max(value, 0.0), 1)
                for name, phase in self.seconds.items() for kind, value in phase.items()}  # fmt: skip


if __name__ == "__main__":
    main()
