"""One arm of a downstream benchmark: a segmenter trained from scratch on its sources, then
scored on held-out photos; several arms at once in worker processes.

An ``ArmRun`` names everything that makes the result (sources, transform, steps, arch,
seed) and the folder it goes to; a finished run's ``result.json`` there is read back
instead of training again, so an interrupted benchmark resumes where it stopped. Each
worker process trains one run at a time on one torch thread with the loading in its own
loop (no DataLoader workers), so two processes keep two cores busy.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import multiprocessing
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from amadapter.evaluation.confusion import confusion_matrix, mean_iou
from amadapter.models.segmentation_models import PROJECT, TRANSFORMERS, SegmentationModel, load_segmentation_model
from amadapter.models.segmenter import SmallSegmenter
from amadapter.training.segmenter_training import RealFrames, train_segmenter
from bench.domain_baselines import Baseline
from storage.fileio import write_atomically
from storage.training_frames import frame_loader

RESULT_FILE = "result.json"


@dataclasses.dataclass(frozen=True)
class ArmRun:
    """One training: ``shards`` (a pattern, or None) interleaved with the real frames of
    ``real_root`` (Cityscapes layout, train split; through ``transform`` when given)."""

    arm: str
    seed: int
    out: str
    real_root: str
    size: tuple[int, int]
    steps: int
    arch: str = "small"
    shards: str | None = None
    transform: Baseline | None = None
    batch_size: int = 8
    lr: float | None = None
    # (name, split, n, domain): the sets the finished model is scored on, by name
    score_on: tuple[tuple[str, str, int, str], ...] = ()
    val_every: int = 0  # > 0: also score on every set every so many steps (the curves)


def run_arm(run: ArmRun, eval_set: Callable[[str, int, str], tuple[np.ndarray, np.ndarray]]) -> dict:
    """Train (or read back, scoring it on any set it lacks) ``run``; returns {"miou": {name:
    value}, "curve": [[step, {name: value}]], "seconds", "steps", "seen"}."""
    out = Path(run.out)
    torch.set_num_threads(1)
    if (out / RESULT_FILE).is_file():
        return _scored(json.loads((out / RESULT_FILE).read_text()), run, eval_set)
    frames = RealFrames(functools.partial(frame_loader, run.real_root, "cityscapes", "train"), run.size,
                        run.transform, seed=run.seed)  # fmt: skip
    curve: list[list] = []

    def on_step(step: int, model) -> None:
        if run.val_every and step % run.val_every == 0:
            curve.append([step, scores(wrap(model), run.score_on, eval_set)])

    trained = train_segmenter(run.shards, frames, run.size, run.steps, run.batch_size, workers=0, lr=run.lr,
                              seed=run.seed, out=str(out), log_every=10**9, arch=run.arch,
                              on_step=on_step)  # fmt: skip
    model = load_segmentation_model(out)
    result = {
        "arm": run.arm,
        "seed": run.seed,
        "miou": scores(model, run.score_on, eval_set),
        "curve": curve,
        "seconds": round(trained["seconds"], 1),
        "steps": trained["steps"],
        "seen": trained["seen"],
    }
    write_atomically(str(out / RESULT_FILE), json.dumps(result).encode(), "application/json")
    return result


def _scored(result: dict, run: ArmRun, eval_set) -> dict:
    """A finished run's result with a score on every set of ``score_on``: a run met again
    with more sets (a training chosen on val, then scored on test) is scored, not retrained."""
    missing = tuple(s for s in run.score_on if s[0] not in result["miou"])
    if missing:
        result["miou"].update(scores(load_segmentation_model(run.out), missing, eval_set))
        write_atomically(str(Path(run.out) / RESULT_FILE), json.dumps(result).encode(), "application/json")
    return result


def wrap(module) -> SegmentationModel:
    """A module in training as a ``SegmentationModel`` (its ``__call__`` sets nothing on it)."""
    return SegmentationModel(module, PROJECT if isinstance(module, SmallSegmenter) else TRANSFORMERS, "", "", "")


def scores(model: SegmentationModel, sets, eval_set) -> dict[str, float]:
    return {name: round(score(model, *eval_set(split, n, domain)), 4) for name, split, n, domain in sets}


def score(model: SegmentationModel, photos: np.ndarray, labels: np.ndarray, batch: int = 32) -> float:
    """mIoU of ``model`` on (photos, labels), pixels pooled over the images."""
    was_training = model.module.training
    model.module.eval()
    predictions = np.concatenate([model.logits(photos[i : i + batch]).argmax(1).numpy()
                                  for i in range(0, len(photos), batch)])  # fmt: skip
    model.module.train(was_training)
    return mean_iou(confusion_matrix(predictions.astype(np.uint8), labels))


def run_arms(runs: Iterable[ArmRun], eval_set, processes: int = 2) -> Iterator[dict]:
    """``run_arm`` of every run, ``processes`` at a time (spawned: torch is not fork-safe),
    results in the runs' order."""
    runs = list(runs)
    pending = [r for r in runs if not (Path(r.out) / RESULT_FILE).is_file()]
    if processes <= 1 or len(pending) <= 1:  # nothing to spread: no process start-up
        yield from (run_arm(r, eval_set) for r in runs)
        return
    with multiprocessing.get_context("spawn").Pool(processes, maxtasksperchild=8) as pool:
        yield from pool.imap(functools.partial(run_arm, eval_set=eval_set), runs)
