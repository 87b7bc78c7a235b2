"""Stage 2: train only the appearance-matching adapter; the UNet, VAE, structure
encoder and prompt stay frozen. Prints the trainable parameter count.

    # the demo model's adapter on world pairs (one style on two layouts)
    python -m jobs.train_adapter --model runs/stage1/model --data world --size 64x128 \\
        --steps 2000 --run-dir runs/stage2 --output amadapter/demo_model --save-fp16

    # on Cityscapes (pairs are two different crops of one frame), 8 GPUs
    accelerate launch --multi_gpu --num_processes 8 -m jobs.train_adapter \\
        --model models/sd15-structure --data cityscapes --root /data/cityscapes \\
        --size 512x1024 --batch-size 64 --device cuda --mixed-precision bf16 \\
        --adapter-checkpointing --loader-workers 6 --run-dir runs/sd15-s2 \\
        --output models/sd15-am-adapter

``--batch-size`` is the global batch (see ``jobs.train_structure``). Re-running the
same command resumes from the run directory's last checkpoint.
"""

from __future__ import annotations

import argparse

from amadapter.training.stage2 import Stage2Options, train_adapter
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
    add_phase_arguments(parser, "adapter", steps=2000, lr=1e-3)
    parser.add_argument("--adapter-max-tokens", type=int, default=None,
                        help="act at layers with at most this many tokens (default: the adapter's setting)")
    parser.add_argument("--adapter-checkpointing", action="store_true",
                        help="recompute the adapter's explicit logits in backward (much less memory, more compute)")
    args = parser.parse_args(argv)
    accelerator = set_up(args)
    pipe = load_model(args)
    options = Stage2Options(adapter=phase_options(args), max_tokens=args.adapter_max_tokens, seed=args.seed,
                            checkpoint_adapter=args.adapter_checkpointing, resume_from=args.resume_from)
    train_adapter(pipe, build_source(args, pairs=True), args.run_dir, options,
                  accelerator, validation=validation(args, pipe, "am_adapter"))
    if accelerator.is_main_process:
        print(f"saved {save_model(pipe, args.output, args.save_fp16)}")


if __name__ == "__main__":
    main()
