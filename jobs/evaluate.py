"""Evaluate generated shards with local models: FID / KID, CLIP-I, layout agreement, per-class pixels.

    python -m jobs.evaluate 'out/augment/*.tar' --real /data/cityscapes --real-split val \\
        --features /models/inception-2015-12-05.pt --clip /models/clip-vit-b32 \\
        --segmenter /models/segformer-b0-cityscapes --out out/eval

Every model comes from a local path; each figure is computed only when what it needs is
given, and is null in ``eval.json`` otherwise:

- FID and KID (``--real`` and ``--features``): the outputs against the real photos of
  ``--real`` (cityscapes ``leftImg8bit``, bdd100k ``images/10k``, or a folder of JPEG /
  PNG photos), in the feature space of ``--features`` (``amadapter.evaluation.
  feature_extractors``: the TorchScript Inception file, a transformers vision model
  directory, or the project's segmenter); ``eval.json`` names the space. Real photos are
  centre-cropped to the outputs' aspect and resized to their size (``--size``).
- CLIP-I (``--clip``, a transformers CLIP directory): cosine similarity between each
  output and the exemplar photo its ``json`` names.
- Layout agreement (``--segmenter``: the project's segmenter or a transformers
  segmentation checkpoint, 19 Cityscapes classes): mIoU of its prediction on the outputs
  against each sample's ``seg.png``.
- Per-class pixel statistics of the target labels (always).

Writes ``OUT/eval.json`` (the figures), ``OUT/samples.jsonl`` (per sample: key, mIoU,
CLIP-I) and ``OUT/report.html`` (per-class bars, the worst samples). A shard, a real
photo or an exemplar that cannot be read is listed under ``skipped`` with its error and
the run goes on. Exit status: 0 done; 1 no sample could be read; 2 bad options or paths.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tarfile
from typing import Iterator

import numpy as np
import torch
from apache_beam.io.filesystems import FileSystems
from tqdm import tqdm

from amadapter.data import decoded_samples, shard_urls
from amadapter.evaluation.clip_similarity import ClipImageEmbedder
from amadapter.evaluation.evaluation import Evaluation
from amadapter.evaluation.feature_extractors import load_feature_extractor
from amadapter.evaluation.report_html import render_report
from amadapter.io.errors import InputError
from amadapter.io.resize import resize_pair, resize_photo
from amadapter.models.segmentation_models import load_segmentation_model
from amadapter.pipelines.exemplar_crop import centred_box, crop
from pipeline.option_values import parse_size
from storage.fileio import write_atomically
from storage.dataset_layouts import DATASETS
from storage.photo_sources import list_photos
from storage.input_reads import read_photo

EVAL_JSON, SAMPLES_JSONL, REPORT_HTML = "eval.json", "samples.jsonl", "report.html"
UNREADABLE_SHARD = "unreadable_shard"  # the code of a shard (or sample in it) that cannot be read


def load_evaluation(args: argparse.Namespace) -> Evaluation:
    """The models the options name, loaded onto ``--device``."""
    return Evaluation(
        features=load_feature_extractor(args.features, args.device) if args.features else None,
        clip=ClipImageEmbedder(args.clip, args.device) if args.clip else None,
        segmenter=load_segmentation_model(args.segmenter, args.device) if args.segmenter else None,
        worst_count=args.worst,
    )


def evaluate(evaluation: Evaluation, urls: list[str], photos: list[str], args) -> dict:
    """Feed the shards' samples (and the real ``photos``) to ``evaluation``; returns what
    ``eval.json`` holds."""
    skipped: list[dict] = []
    unreadable_exemplars: set[str] = set()
    size = args.size
    batch: list[tuple] = []
    for url in tqdm(urls, desc="shards", unit="shard", file=sys.stderr):
        for key, image, label, meta in _shard_samples(url, skipped):
            size = size or image.shape[:2]
            exemplar = _exemplar_photo(evaluation, meta, unreadable_exemplars, skipped)
            batch.append((key, *resize_pair(image, label, size), exemplar))
            if len(batch) == args.batch_size:
                _add_generated(evaluation, batch)
                batch = []
    if batch:
        _add_generated(evaluation, batch)
    if photos and evaluation.per_sample:
        _add_real(evaluation, photos, size, args.batch_size, skipped)
    summary = evaluation.summary(args.kid_subsets, args.kid_subset_size, args.seed)
    summary.update(
        shards=urls,
        real={"root": args.real, "dataset": args.real_dataset, "split": args.real_split,
              "photos": len(photos)} if args.real else None,
        skipped=skipped,
    )
    return summary


def write_outputs(out: str, summary: dict, evaluation: Evaluation, title: str) -> dict[str, str]:
    """``eval.json``, ``samples.jsonl`` and ``report.html`` under ``out``; returns their paths."""
    if FileSystems.get_scheme(out) is None:
        os.makedirs(out, exist_ok=True)
    paths = {name: FileSystems.join(out, name) for name in (EVAL_JSON, SAMPLES_JSONL, REPORT_HTML)}
    write_atomically(paths[EVAL_JSON], json.dumps(summary, indent=1).encode(), "application/json")
    rows = "".join(json.dumps(dataclasses.asdict(s)) + "\n" for s in evaluation.per_sample)
    write_atomically(paths[SAMPLES_JSONL], rows.encode(), "application/json")
    report = render_report(summary, evaluation.worst(), title)
    write_atomically(paths[REPORT_HTML], report.encode(), "text/html")
    return paths


def _shard_samples(url: str, skipped: list[dict]) -> Iterator[tuple]:
    """The decoded samples of one shard; reading stops at the first damaged member, which
    is recorded (the samples before it count)."""
    try:
        yield from decoded_samples(url)
    except (OSError, tarfile.TarError, ValueError, KeyError) as error:
        skipped.append({"path": url, "code": UNREADABLE_SHARD, "reason": f"{type(error).__name__}: {error}"})


def _exemplar_photo(evaluation: Evaluation, meta: dict, unreadable: set[str], skipped: list[dict]):
    """The sample's exemplar photo path, read and embedded for CLIP-I on first sight (a
    photo that cannot be read is recorded once, in ``unreadable`` and ``skipped``)."""
    path = (meta.get("exemplar") or {}).get("photo")
    if evaluation.needs_exemplar(path) and path not in unreadable:
        try:
            evaluation.add_exemplar(path, read_photo(path))
        except InputError as error:
            unreadable.add(path)
            skipped.append({"path": path, "code": error.code, "reason": error.reason})
    return path


def _add_generated(evaluation: Evaluation, batch: list[tuple]) -> None:
    keys, images, labels, exemplars = zip(*batch)
    evaluation.add_generated(list(keys), np.stack(images), np.stack(labels), list(exemplars))


def _add_real(evaluation: Evaluation, photos: list[str], size, batch_size: int, skipped) -> None:
    batch = []
    for path in tqdm(photos, desc="real photos", unit="photo", file=sys.stderr):
        try:
            batch.append(fit_photo(read_photo(path), size))
        except InputError as error:
            skipped.append({"path": path, "code": error.code, "reason": error.reason})
            continue
        if len(batch) == batch_size:
            evaluation.add_real(np.stack(batch))
            batch = []
    if batch:
        evaluation.add_real(np.stack(batch))


def fit_photo(photo: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The largest centred window of ``photo`` with the aspect of ``size``, resized to it (a
    16:9 BDD frame against 2:1 outputs loses bands top and bottom, not its geometry)."""
    box = centred_box(*photo.shape[:2], aspect=size[1] / size[0])
    return resize_photo(crop(photo, box), size)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("shards", help="shard glob, brace pattern or URL, e.g. 'out/augment/*.tar'")
    parser.add_argument("--real", help="root of the real photos FID and KID compare against")
    parser.add_argument("--real-dataset", default="cityscapes", choices=DATASETS)
    parser.add_argument("--real-split", default=None, help="split of --real (default: train; folder: all)")
    parser.add_argument("--real-limit", type=int, default=0, help="use the first N real photos (0: all)")
    parser.add_argument("--features", help="feature space of FID / KID: TorchScript Inception file, "
                        "transformers vision model directory, or the project's segmenter")
    parser.add_argument("--clip", help="transformers CLIP directory, for CLIP-I")
    parser.add_argument("--segmenter", help="segmenter for layout agreement: the project's "
                        "(.safetensors or a directory with segmenter.safetensors) or a transformers checkpoint")
    parser.add_argument("--size", type=parse_size, default=None,
                        help="HxW every image is evaluated at (default: the first sample's)")
    parser.add_argument("--out", default="out/eval", help="where eval.json, samples.jsonl, report.html go")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--kid-subsets", type=int, default=100)
    parser.add_argument("--kid-subset-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the KID subsets")
    parser.add_argument("--worst", type=int, default=8, help="worst samples shown in the report")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.real and not args.features:
        parser.exit(2, "evaluate: --real needs --features (the feature space of FID and KID)\n")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:  # everything that can be checked before the run: shards, real root, models
        urls = shard_urls(args.shards)
        photos = list_photos(args.real, args.real_dataset, args.real_split) if args.real else []
        evaluation = load_evaluation(args)
    except (FileNotFoundError, ValueError, InputError) as error:
        parser.exit(2, f"evaluate: {error}\n")
    photos = photos[: args.real_limit] if args.real_limit else photos
    summary = evaluate(evaluation, urls, photos, args)
    if summary["samples"] == 0:
        parser.exit(1, f"evaluate: no sample could be read from {args.shards}: {summary['skipped']}\n")
    paths = write_outputs(args.out, summary, evaluation, f"evaluation of {args.shards}")
    print(_summary_lines(summary, paths))
    return summary


def _summary_lines(summary: dict, paths: dict[str, str]) -> str:
    size = "x".join(map(str, summary["size"]))
    lines = [f"[evaluate] {summary['samples']} samples in {len(summary['shards'])} shards at {size}, "
             f"{len(summary['skipped'])} inputs skipped"]
    if summary["fid"] is not None:
        fid, kid = summary["fid"], summary["kid"]
        lines.append(f"  FID {fid['value']:.3f}, KID {kid['mean']:.5f} +- {kid['std']:.5f} "
                     f"({fid['generated_count']} vs {fid['real_count']} real) in {fid['feature_extractor']}")
    if summary["clip_i"] is not None and summary["clip_i"]["mean"] is not None:
        lines.append(f"  CLIP-I {summary['clip_i']['mean']:.4f} over {summary['clip_i']['count']} samples")
    if summary["layout"] is not None and summary["layout"]["miou"] is not None:
        lines.append(f"  layout mIoU {summary['layout']['miou']:.4f} ({summary['layout']['segmenter']})")
    lines += [f"  {name:<13} {path}" for name, path in paths.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
