"""Command-line options and set-up shared by ``jobs.train_structure`` and ``jobs.train_adapter``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from amadapter.pipelines.model_factory import (
    PRESETS,
    build_pipeline,
    from_stable_diffusion,
    record_trained_size,
)
from amadapter.pipelines.pipeline_amadapter import AMAdapterPipeline
from amadapter.pipelines.warm_start import take_vae, warm_start
from accelerate import Accelerator

from amadapter.training import data
from amadapter.training.distributed import MIXED_PRECISION, make_accelerator
from amadapter.training.loop import OPTIMIZERS, PhaseOptions, Validation
from amadapter.training.validation import world_validation
from amadapter.world.domains import DOMAIN_NAMES
from amadapter.world.versions import WORLD_VERSIONS
from pipeline.option_values import parse_finite, parse_size
from storage.dataset_layouts import DATASETS as DATASET_LAYOUTS
from storage.training_frames import frame_loader

DATASETS = ("world", *DATASET_LAYOUTS)  # the procedural world, or real frames in a layout
WORLD_PAIRS = ("scene", "crop", "mixed")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument("--model", default="demo",
                       help=f"a preset ({', '.join(PRESETS)}: fresh weights) or a model directory")
    model.add_argument("--stable-diffusion", metavar="DIR",
                       help="a local Stable Diffusion 1.5 diffusers directory (replaces --model)")
    model.add_argument("--preset-overrides", type=json.loads, default=None,
                       help='JSON constructor overrides for a preset, e.g. \'{"unet": {"layers_per_block": 2}}\'')
    model.add_argument("--warm-start", metavar="DIR",
                       help="with a preset: start from this model directory's weights wherever the preset has "
                            "the same tensors (grows a trained model; new transformer blocks start as identity)")
    model.add_argument("--vae-from", metavar="DIR", help="take the VAE (weights, latent scaling) of this model directory")
    model.add_argument("--output", required=True, help="directory for the trained model (model-directory format)")
    model.add_argument("--save-fp16", action="store_true", help="store the final weights as float16 (half the size)")

    source = parser.add_argument_group("data")
    source.add_argument("--data", choices=DATASETS, default="world")
    source.add_argument("--root", help="dataset root (cityscapes, bdd100k, folder); local, gs:// or s3://")
    source.add_argument("--split", default=None, help="dataset split (world: train, val or test)")
    source.add_argument("--world-version", type=int, choices=WORLD_VERSIONS, default=1,
                        help="world: 1 (one appearance per class) or 2 (per-instance appearance)")
    source.add_argument("--world-domain", choices=DOMAIN_NAMES, default=None,
                        help="world: the styles of an appearance domain (amadapter.world.domains; "
                             "default: uniform palettes)")
    source.add_argument("--world-pairs", choices=WORLD_PAIRS, default="scene",
                        help="world pairs (stage 2, reference training): one style on two layouts (scene), "
                             "two windows of one scene (crop), or half of each (mixed)")
    source.add_argument("--label-format", default=None, help="ids, train_ids or color (folder: required)")
    source.add_argument("--size", type=parse_size, default=(64, 128), help="training crop HxW")
    source.add_argument("--batch-size", type=int, default=16,
                        help="global batch per optimizer step, over all processes and accumulation steps "
                             "(so a run continues the same with any process count)")
    source.add_argument("--loader-workers", type=int, default=2,
                        help="DataLoader worker processes per training process (0: load in the step loop)")
    source.add_argument("--prefetch-factor", type=int, default=2, help="batches each loader worker builds ahead")

    run = parser.add_argument_group("run")
    run.add_argument("--run-dir", required=True, help="checkpoints and loss.jsonl; an existing run resumes")
    run.add_argument("--device", default="cpu",
                     help="cpu or cuda (under accelerate launch each process takes its local GPU); cuda:1 ...")
    run.add_argument("--mixed-precision", choices=MIXED_PRECISION, default="no")
    run.add_argument("--gradient-checkpointing", action="store_true", help="trade UNet compute for memory")
    run.add_argument("--gradient-accumulation", type=int, default=1, help="micro-steps per optimizer step")
    run.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw",
                     help="adamw8bit: bitsandbytes' 8-bit AdamW (install bitsandbytes); sgd: SGD with momentum "
                          "0.9, whose step is linear in the gradients to the gradient, so two runs that should agree "
                          "(e.g. 1 and 2 processes) differ only by float rounding (Adam's ~lr-sized "
                          "step amplifies rounding in near-zero gradients)")
    run.add_argument("--ema-decay", type=parse_finite, default=None,
                     help="keep an EMA of the trained weights (e.g. 0.999); the saved model uses it")
    run.add_argument("--validate-every", type=int, default=0,
                     help="steps between validations on fixed world val pairs (colour error; 0: off); "
                          "the best is kept in RUN_DIR/best/")
    run.add_argument("--val-pairs", type=int, default=8)
    run.add_argument("--val-steps", type=int, default=10, help="sampling steps of a validation render")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    run.add_argument("--seed", type=int, default=0, help="data order, noise and fresh weights")
    run.add_argument("--log-every", type=int, default=10)
    run.add_argument("--checkpoint-every", type=int, default=500)
    run.add_argument("--keep-checkpoints", type=int, default=2)
    run.add_argument("--resume-from", metavar="CHECKPOINT", default=None,
                     help="resume from this checkpoint of RUN_DIR (later ones are deleted); default: the latest")


def add_phase_arguments(parser: argparse.ArgumentParser, name: str, steps: int, lr: float,
                        prefix: str = "") -> None:
    group = parser.add_argument_group(f"{name} optimisation")
    group.add_argument(f"--{prefix}steps", type=int, default=steps, help="total optimisation steps")
    group.add_argument(f"--{prefix}lr", type=parse_finite, default=lr, help="peak learning rate (AdamW)")
    group.add_argument(f"--{prefix}warmup-steps", type=int, default=0)
    group.add_argument(f"--{prefix}schedule", choices=("constant", "cosine"), default="constant")
    group.add_argument(f"--{prefix}weight-decay", type=parse_finite, default=0.0)
    group.add_argument(f"--{prefix}grad-clip", type=parse_finite, default=1.0)


def phase_options(args: argparse.Namespace, prefix: str = "") -> PhaseOptions:
    key = prefix.replace("-", "_")
    return PhaseOptions(
        steps=getattr(args, f"{key}steps"),
        lr=getattr(args, f"{key}lr"),
        warmup_steps=getattr(args, f"{key}warmup_steps"),
        schedule=getattr(args, f"{key}schedule"),
        weight_decay=getattr(args, f"{key}weight_decay"),
        grad_clip=getattr(args, f"{key}grad_clip"),
        log_every=args.log_every,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints,
        gradient_accumulation=args.gradient_accumulation,
        loader_workers=args.loader_workers,
        prefetch_factor=args.prefetch_factor,
        ema_decay=args.ema_decay,
        optimizer=args.optimizer,
        validate_every=args.validate_every,
    )


def set_up(args: argparse.Namespace) -> Accelerator:
    """Threads and this process's accelerator (one process, or one of an ``accelerate launch``)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return make_accelerator(args.device, args.mixed_precision)


def validation(args: argparse.Namespace, pipe: AMAdapterPipeline, mode: str) -> Validation | None:
    if not args.validate_every:
        return None
    return world_validation(pipe, *args.size, args.val_pairs, mode, args.val_steps, seed=args.seed,
                            version=args.world_version, domain=args.world_domain)


def load_model(args: argparse.Namespace) -> AMAdapterPipeline:
    """The starting model: an SD1.5 directory, a preset with fresh weights (or grown from a
    trained model), or a model directory; optionally with another directory's VAE.

    Weights are float32 for training whatever dtype a directory stores."""
    if args.warm_start and (args.stable_diffusion or args.model not in PRESETS):
        raise SystemExit("--warm-start needs a preset as --model (it grows the preset from DIR)")
    if args.stable_diffusion:
        pipe = from_stable_diffusion(args.stable_diffusion)
    elif args.model in PRESETS:
        pipe = build_pipeline(args.model, args.preset_overrides, seed=args.seed)
        if args.warm_start:
            new = warm_start(pipe, AMAdapterPipeline.from_pretrained(args.warm_start, dtype=torch.float32))
            grown = ", ".join(f"{name} {len(tensors)} new tensors" for name, tensors in new.items()) or "nothing new"
            print(f"warm start from {args.warm_start}: {grown}")
    else:
        pipe = AMAdapterPipeline.from_pretrained(args.model, dtype=torch.float32)
    if args.vae_from:
        take_vae(pipe, args.vae_from)
    if args.gradient_checkpointing:
        pipe.unet.enable_gradient_checkpointing()
    return pipe


def build_source(args: argparse.Namespace, pairs: bool):
    """The batch source for stage 1 (``pairs=False``) or stage 2 (``pairs=True``)."""
    height, width = args.size
    if args.data == "world":
        world_args = dict(split=args.split or "train", seed=args.seed, version=args.world_version,
                          domain=args.world_domain)
        if not pairs:
            return data.WorldScenes(height, width, args.batch_size, **world_args)
        kinds = {"scene": [data.WorldPairs], "crop": [data.WorldCropPairs],
                 "mixed": [data.WorldPairs, data.WorldCropPairs]}[args.world_pairs]
        sources = [kind(height, width, args.batch_size, **world_args) for kind in kinds]
        return sources[0] if len(sources) == 1 else data.PairMixture(sources, [1.0] * len(sources), seed=args.seed)
    if not args.root:
        raise SystemExit(f"--data {args.data} needs --root")
    load_frame, count = frame_loader(args.root, args.data, args.split, args.label_format)
    kind = data.FrameCropPairs if pairs else data.FrameCrops
    return kind(load_frame, count, height, width, args.batch_size, seed=args.seed)


def save_model(
    pipe: AMAdapterPipeline,
    output: str | Path,
    fp16: bool,
    trained_size: tuple[int, int] | None = None,
) -> Path:
    """Save in the model-directory format (call on the main process only); returns the
    directory. ``trained_size``: the size the UNet was trained at, recorded in its config
    (the augment job's default size)."""
    output = Path(output)
    if trained_size is not None:
        record_trained_size(pipe, trained_size)
    if fp16:
        pipe.to(dtype=torch.float16)
    pipe.save_pretrained(output, safe_serialization=True)
    if fp16:
        pipe.to(dtype=torch.float32)
    return output
