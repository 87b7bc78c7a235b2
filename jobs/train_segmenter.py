"""Example trainer: a segmenter on the augment job's shards, optionally mixed with real data.

    python -m jobs.train_segmenter --shards 'out/augment/*.tar' --steps 200
    python -m jobs.train_segmenter --shards 'out/augment/*.tar' \\
        --real /data/cityscapes --real-dataset cityscapes --real-split train --size 64x128
    python -m jobs.train_segmenter --arch segformer --init /models/mit-b0 \\
        --shards 'out/augment/*.tar' --size 512x1024 --steps 20000 --out out/segformer

It shows the intended use of the output (the loop: ``amadapter.training.segmenter_training``):
shards are streamed through a torch ``DataLoader`` with several workers, interleaved
one sample at a time with the real frames, read with the project's dataset readers
(``storage.training_frames``: cityscapes, bdd100k or folder layouts, local or on a
bucket); an unreadable frame is skipped with its named error.
The model (``amadapter.training.segmenters``): ``--arch small`` (default), the project's
``SmallSegmenter``, saved as ``--out/segmenter.safetensors``; ``--arch segformer``, a
transformers ``SegformerForSemanticSegmentation`` with the Cityscapes train classes as
``id2label`` and 255 as ignore index, from a local checkpoint (``--init``: e.g. an
ImageNet ``mit-b0`` encoder or a Cityscapes SegFormer) or from a config (default: the
MiT-B0 shape, 3.7 M parameters, random; ``--segformer-config FILE.json`` overrides its
fields), saved into ``--out`` as a transformers checkpoint directory.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
from pathlib import Path

import torch

from amadapter.training.segmenter_training import RealFrames, train_segmenter
from amadapter.training.segmenters import ARCHS
from pipeline.option_values import parse_finite, parse_size
from storage.dataset_layouts import DATASETS
from storage.training_frames import frame_loader


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", help="shard glob or brace pattern, e.g. 'out/augment/*.tar'")
    parser.add_argument("--real", help="a real dataset root to mix in")
    parser.add_argument("--real-dataset", default="cityscapes", choices=DATASETS)
    parser.add_argument("--real-split", default=None, help="split of --real (default: train)")
    parser.add_argument(
        "--size", type=parse_size, default=None, help="HxW all samples are resized to"
    )
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--arch", default="small", choices=ARCHS)
    parser.add_argument("--init", help="segformer: a local transformers checkpoint directory to start from")
    parser.add_argument(
        "--segformer-config", help="segformer: JSON file of SegformerConfig fields (default: MiT-B0)"
    )
    parser.add_argument(
        "--lr", type=parse_finite, default=None,
        help="AdamW rate (default: 2e-3 small; segformer 6e-5 with --init, else 1e-3)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads of the training process"
    )
    parser.add_argument("--out", default="out/segmenter", help="where the trained model goes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    real = None
    if args.real:
        real = RealFrames(functools.partial(frame_loader, args.real, args.real_dataset, args.real_split), args.size,
                          seed=args.seed)  # fmt: skip
    result = train_segmenter(
        args.shards,
        real,
        args.size,
        args.steps,
        args.batch_size,
        args.workers,
        args.lr,
        args.seed,
        args.out,
        arch=args.arch,
        init=args.init,
        segformer_config=json.loads(Path(args.segformer_config).read_text()) if args.segformer_config else None,
    )
    print(
        f"trained {result['steps']} steps in {result['seconds']:.1f} s on "
        f"{result['seen']['synthetic']} synthetic + {result['seen']['real']} real samples; "
        f"loss {result['losses'][0]:.3f} -> {result['losses'][-1]:.3f}; weights in {args.out}"
    )
    return result


if __name__ == "__main__":
    main()
