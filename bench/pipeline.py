"""Pipeline overhead and memory: the augment job against the bare sampler loop.

    python -m bench.pipeline [--quick] [--n 32] [--steps 20] [--model DIR]
    python -m bench.pipeline --full-res [--n 40]      # memory only, Cityscapes-size inputs

The same N world targets (test split, 64x128), exemplar pool (48 val photos,
one prebuilt index), model, steps, batch size and seeds go through

(a) the bare sampler loop, in this process: the job's own batches
    (``plan_shard`` of each shard, each batch decoded with ``load_batch``)
    rendered one model call each with ``Renderer.render``; only the model calls
    are timed;
(b) the DirectRunner job end to end, in this process (``jobs.augment.run``):
    reading label maps, expansion, shard assignment, retrieval, planning,
    loading the model, synthesis, PNG encoding, shard and manifest writing.

Each is repeated (interleaved a, b, a, b, ...) and the medians are compared.
(b) must produce exactly the images of (a) (``images_identical``). Then the peak
RSS of (b) is measured in fresh processes at N and 10 N targets with 1 step
(synthesis cost aside, memory must not grow with the input: the job streams).

``--full-res`` measures only that memory, on inputs the size Cityscapes ships
(2048x1024 label maps with 2048x1024 PNG photos, made by nearest-upscaling the
real sample in ../shared/data and rolling it sideways by a different amount per
frame, so layouts and retrieved exemplars differ), at N and 10 N, with the label
root as its own exemplar pool (index built by the job), 1 step and the model's
small native size: the model's memory is small and fixed, so what grows is the
graph's.

Model: ``--model``, else the bundled ``amadapter/demo_model`` when present, else
the ``demo`` preset with random weights (timing does not depend on weights;
``model`` in the JSON says which). The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from amadapter.data import shards
from amadapter.pipelines.model_factory import build_pipeline
from amadapter.retrieval import ExemplarIndex, draw
from amadapter.world.export import export_world
from jobs.augment import run
from pipeline.augment_graph import DEFAULT_MODEL_DIR
from pipeline.default_world import POOL_SPLIT, TARGET_SPLIT, WORLD_POOL, WORLD_SIZE
from pipeline.exemplar_index import prepare_index
from transforms.assign_shards import assign_shards
from transforms.expand_samples import expand_targets, label_key
from storage.label_sources import list_label_sources
from transforms.load_batch import load_batch
from transforms.plan_shards import plan_shard
from storage.input_reads import read_label_record
from storage.records import LentExemplar
from transforms.retrieve_exemplars import RetrievedTarget, match_source
from transforms.renderer import Renderer

BATCH_SIZE = 8
SHARD_SIZE = 64
SEED = 0
GUIDANCE = 7.5
THREADS = 1  # the job's --torch-threads default, used by both sides

# VmHWM: the peak RSS of this address space. Not ru_maxrss, which Linux carries over from
# the parent through fork and exec (it reported the bench process's own peak).
PEAK_RSS_JOB = """
import json, sys
from jobs.augment import run
summary = run(sys.argv[1:])
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak_rss_kb": int(hwm.split()[1]), "written": summary.written}))
"""


def export_inputs(root: Path, n: int) -> str:
    """N test layouts + the pool of the built-in world; returns the pool's index path."""
    export_world(root, n, TARGET_SPLIT, *WORLD_SIZE)
    export_world(root, WORLD_POOL, POOL_SPLIT, *WORLD_SIZE)
    return prepare_index(None, str(root), "cityscapes", POOL_SPLIT, str(root))


def job_argv(root: Path, index: str, model: str, steps: int, output: Path) -> list[str]:
    return [
        "--runner=DirectRunner", "--labels", str(root), "--dataset", "cityscapes",
        "--split", TARGET_SPLIT, "--index", index, "--model", model, "--steps", str(steps),
        "--batch-size", str(BATCH_SIZE), "--shard-size", str(SHARD_SIZE), "--seed", str(SEED),
        "--guidance", str(GUIDANCE), "--image-format", "png", "--preview-count", "0",
        "--torch-threads", str(THREADS), "--output", str(output),
    ]  # fmt: skip


def planned_work(root: Path, index_path: str) -> list:
    """The job's ShardWork for these inputs, built with the job's own functions."""
    sources = list_label_sources(str(root), "cityscapes", TARGET_SPLIT)
    targets = [t for s in sources for t in expand_targets(s, 1, SEED)]
    ranked = ExemplarIndex.load(index_path).query(
        [read_label_record(t.label).train_ids for t in targets],
        1,
        target_paths=[t.source for t in targets],
    )
    best = [draw(r, None) for r in ranked]  # --exemplar-topk 1
    retrieved = [
        RetrievedTarget(t, (LentExemplar(match_source(m), m.score),)) for t, m in zip(targets, best)
    ]
    shard_of = assign_shards([t.key for t in targets], SHARD_SIZE, group=label_key)
    by_shard: dict[int, list] = {}
    for item in retrieved:
        by_shard.setdefault(shard_of[item.target.key], []).append(item)
    return [plan_shard(shard, items, BATCH_SIZE) for shard, items in sorted(by_shard.items())]


def bare_loop(renderer: Renderer, work: list, steps: int) -> tuple[float, dict[str, np.ndarray]]:
    size = renderer.native_size()
    images: dict[str, np.ndarray] = {}
    seconds = 0.0
    for shard in work:
        for planned in shard.batches:
            batch, _ = load_batch(shard.shard, planned)  # decoding is not timed
            began = time.perf_counter()
            rendered = renderer.render(batch, steps, GUIDANCE, size)
            seconds += time.perf_counter() - began
            for request, image in zip(batch, rendered):
                images[request.target.key] = image
    return seconds, images


FULL_RES = (1024, 2048)  # (H, W) of Cityscapes frames
SAMPLE_FRAME = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cityscapes"
SAMPLE_NAME = "frankfurt/frankfurt_000000_000294"
FULL_RES_PHOTOS = 4  # distinct photos; frames share them through hard links


def export_full_res(root: Path, n: int) -> None:
    """``n`` Cityscapes-layout frames (val split) at 2048x1024; see the module docstring."""
    labels = np.asarray(
        Image.open(SAMPLE_FRAME / "gtFine" / "val" / f"{SAMPLE_NAME}_gtFine_labelIds.png")
    )
    photo = Image.open(SAMPLE_FRAME / "leftImg8bit" / "val" / f"{SAMPLE_NAME}_leftImg8bit.png")
    big_labels = np.asarray(
        Image.fromarray(labels).resize(FULL_RES[::-1], Image.Resampling.NEAREST)
    )
    big_photo = np.asarray(photo.convert("RGB").resize(FULL_RES[::-1], Image.Resampling.BILINEAR))
    city = root / "gtFine" / "val" / "bench"
    photos = root / "leftImg8bit" / "val" / "bench"
    city.mkdir(parents=True)
    photos.mkdir(parents=True)
    shared = []
    for i in range(FULL_RES_PHOTOS):
        path = root / f"photo{i}.png"
        Image.fromarray(np.roll(big_photo, i * 97, axis=1)).save(path, compress_level=1)
        shared.append(path)
    for i in range(n):
        frame = f"bench_{i:06d}_000019"
        shift = (i * 2048) // n
        Image.fromarray(np.roll(big_labels, shift, axis=1)).save(
            city / f"{frame}_gtFine_labelIds.png"
        )
        os.link(shared[i % FULL_RES_PHOTOS], photos / f"{frame}_leftImg8bit.png")


def full_res_argv(root: Path, model: str, output: Path) -> list[str]:
    return [
        "--runner=DirectRunner", "--labels", str(root), "--dataset", "cityscapes",
        "--split", "val", "--model", model, "--steps", "1", "--batch-size", str(BATCH_SIZE),
        "--shard-size", str(SHARD_SIZE), "--image-format", "png", "--preview-count", "0",
        "--torch-threads", str(THREADS), "--output", str(output),
    ]  # fmt: skip


def full_res_memory(model: str, n: int, work_dir: Path) -> dict:
    """Peak RSS of the job on ``n`` and ``10 n`` full-resolution inputs, fresh processes."""
    figures = {}
    for label, count in (("n", n), ("10n", 10 * n)):
        root = work_dir / f"full{count}"
        export_full_res(root, count)
        began = time.perf_counter()
        figures[f"peak_rss_mb_{label}"] = round(
            job_peak_rss_mb(full_res_argv(root, model, work_dir / f"out{count}")), 1
        )
        figures[f"seconds_{label}"] = round(time.perf_counter() - began, 1)
        shutil.rmtree(root)
        print(f"{count} full-resolution inputs: {figures}", flush=True)
    ratio = figures["peak_rss_mb_10n"] / figures["peak_rss_mb_n"]
    return {"n": n, "input_size": "1024x2048", **figures, "ratio_rss_10n_vs_n": round(ratio, 4)}


def job_peak_rss_mb(argv: list[str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_JOB, *argv],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_rss_kb"] / 1024.0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 steps, 1 repeat")
    parser.add_argument("--n", type=int, default=32, help="targets (at least 32)")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (default 20; quick 2)")
    parser.add_argument("--repeats", type=int, default=None, help="default 3; quick 1")
    parser.add_argument("--model", default=None, help="checkpoint directory")
    parser.add_argument(
        "--full-res", action="store_true", help="only peak RSS at N and 10 N, 2048x1024 inputs"
    )
    args = parser.parse_args(argv)
    if args.n < 32:
        parser.error("--n must be at least 32")
    if args.full_res:
        work_dir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
        try:
            model = args.model or DEFAULT_MODEL_DIR
            result = {"model": model, **full_res_memory(model, args.n, work_dir)}
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
        print(json.dumps(result))
        return result
    steps = args.steps or (2 if args.quick else 20)
    repeats = args.repeats or (1 if args.quick else 3)
    torch.set_num_threads(THREADS)
    work_dir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        model, model_note = args.model, "given"
        if model is None and os.path.isdir(DEFAULT_MODEL_DIR):
            model, model_note = DEFAULT_MODEL_DIR, "bundled demo model"
        if model is None:
            model, model_note = str(work_dir / "model"), "demo preset, random weights"
            build_pipeline("demo").save_pretrained(model)
        root = work_dir / "data"
        index = export_inputs(root, args.n)
        work = planned_work(root, index)
        bare_loop(Renderer.load(model), work[:1], 1)  # warm-up: one-time kernel setup, both sides
        s_bare, s_pipeline, identical = [], [], True
        for repeat in range(repeats):
            # A fresh model per repeat: like the job, no inversion cached by an earlier repeat.
            seconds, images = bare_loop(Renderer.load(model), work, steps)
            s_bare.append(seconds)
            output = work_dir / f"run{repeat}"
            began = time.perf_counter()
            summary = run(job_argv(root, index, model, steps, output))
            s_pipeline.append(time.perf_counter() - began)
            written = {
                key: image
                for key, image, _ in shards(sorted(map(str, output.glob("*.tar"))), with_key=True)
            }
            identical &= summary.written == args.n and all(
                np.array_equal(written[k], images[k]) for k in images
            )
            shutil.rmtree(output)
            line = f"bare {seconds:.1f} s, pipeline {s_pipeline[-1]:.1f} s"
            print(f"repeat {repeat + 1}/{repeats}: {line}", flush=True)
        rss_n = job_peak_rss_mb(job_argv(root, index, model, 1, work_dir / "rss_n"))
        root_10n = work_dir / "data10"
        rss_10n = job_peak_rss_mb(
            job_argv(root_10n, export_inputs(root_10n, 10 * args.n), model, 1, work_dir / "rss_10n")
        )
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    bare, pipe = statistics.median(s_bare), statistics.median(s_pipeline)
    result = {
        "n": args.n,
        "steps": steps,
        "batch_size": BATCH_SIZE,
        "repeats": repeats,
        "model": model_note,
        "s_bare": round(bare, 3),
        "s_pipeline": round(pipe, 3),
        "ratio_pipeline_vs_bare": round(pipe / bare, 4),
        "images_identical": bool(identical),
        "peak_rss_mb_n": round(rss_n, 1),
        "peak_rss_mb_10n": round(rss_10n, 1),
        "ratio_rss_10n_vs_n": round(rss_10n / rss_n, 4),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
