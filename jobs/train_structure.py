"""Stage 1: train the structure encoder and fine-tune the UNet (and, for a model
trained from scratch, first its VAE) with the noise-prediction loss.

    # the demo model, from scratch on the procedural world (CPU)
    python -m jobs.train_structure --model demo --data world --size 64x128 \\
        --vae-steps 2000 --steps 6000 --run-dir runs/stage1 --output runs/stage1/model

    # Stable Diffusion 1.5 on Cityscapes, 8 GPUs of one machine (accelerate launch)
    accelerate launch --multi_gpu --num_processes 8 -m jobs.train_structure \\
        --stable-diffusion /models/sd15 --data cityscapes --root /data/cityscapes \\
        --size 512x1024 --batch-size 64 --device cuda --mixed-precision bf16 \\
        --gradient-checkpointing --loader-workers 6 --ema-decay 0.9999 \\
        --steps 20000 --lr 1e-5 --run-dir runs/sd15-s1 --output models/sd15-structure

``--batch-size`` is the global batch of one optimizer step (over processes and
``--gradient-accumulation`` micro-steps), so the same command with another process
count trains the same model. Re-running the same command (with any process count)
resumes from the run directory's last checkpoint; several machines need the run
directory on a shared file system.
"""

from __future__ import annotations

import argparse

from amadapter.training.stage1 import Stage1Options, train_structure
from pipeline.option_values import parse_finite, parse_size
from jobs.training_common import (
    add_common_arguments,
    add_phase_arguments,
    build_source,
    load_model,
    phase_options,
    save_model,
    set_up,
    validation,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    add_phase_arguments(parser, "UNet + structure encoder", steps=6000, lr=2e-4)
    add_phase_arguments(parser, "VAE (0 steps: keep the model's VAE)", steps=0, lr=5e-4, prefix="vae-")
    parser.add_argument("--vae-crop", type=parse_size, default=None, help="HxW random crop for VAE steps")
    parser.add_argument("--vae-kl-weight", type=parse_finite, default=1e-6)
    parser.add_argument("--vae-mse-weight", type=parse_finite, default=1.0, help="MSE term added to the L1 loss")
    parser.add_argument("--uncond-prob", type=parse_finite, default=0.1, help="prompt dropout for guidance")
    parser.add_argument("--reference-prob", type=parse_finite, default=0.0,
                        help="train on pairs; a conditional target reads its exemplar with this probability "
                             "(from-scratch models; 0 for Stable Diffusion, which reads exemplars natively)")
    parser.add_argument("--reference-beta", type=parse_finite, default=10.0,
                        help="categorical class prior of the reading targets")
    parser.add_argument("--freeze-unet", action="store_true", help="train only the structure encoder")
    args = parser.parse_args(argv)
    accelerator = set_up(args)
    pipe = load_model(args)
    options = Stage1Options(
        unet=phase_options(args),
        vae=phase_options(args, "vae-") if args.vae_steps > 0 else None,
        vae_crop=args.vae_crop,
        vae_kl_weight=args.vae_kl_weight,
        vae_mse_weight=args.vae_mse_weight,
        uncond_prob=args.uncond_prob,
        reference_prob=args.reference_prob,
        reference_beta=args.reference_beta,
        train_unet=not args.freeze_unet,
        seed=args.seed,
        resume_from=args.resume_from,
    )
    train_structure(pipe, build_source(args, pairs=args.reference_prob > 0), args.run_dir, options,
                    accelerator, validation=validation(args, pipe, "categorical"))
    if accelerator.is_main_process:
        # Stage 1 trains the UNet: its size is the model's (stage 2 trains only the adapter).
        print(f"saved {save_model(pipe, args.output, args.save_fp16, trained_size=args.size)}")


if __name__ == "__main__":
    main()
