"""A fixed held-out evaluation loss per exemplar mode: what stage 2's noisy training loss
cannot show.

    python -m bench.heldout_loss --model DIR [--world-version 2] [--pairs 32] [--draws 4]

For each pair kind of world val pairs (``scene``: one style on two layouts; ``crop``: two
windows of one scene; ``amadapter.training.data``), the stage-2 noise-prediction loss of
the targets reading their exemplars (``stage2.adapter_loss``) in every mode (``none``,
``augmented``, ``categorical`` with ``--beta``, ``am_adapter``), with the same pairs,
noise and timesteps for every mode and every model (rows draw from ``RowRandom(seed,
draw, row)``), averaged over ``--draws`` draws. Lower is better; the gap between
``none`` and a mode is what reading the exemplar is worth to the denoiser. The last
printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from amadapter.models.attention_processors import MODES
from amadapter.pipelines.pipeline_amadapter import AMAdapterPipeline
from amadapter.training.conditioning import PromptConditioning
from amadapter.training.data import WorldCropPairs, WorldPairs
from amadapter.training.noise import RowRandom
from amadapter.training.stage2 import adapter_loss
from amadapter.world.versions import WORLD_VERSIONS

SEED = 20261201  # the noise and timesteps of every evaluation
CHUNK = 8  # rows per forward (memory), without effect on the figures


@torch.no_grad()
def heldout_losses(pipe, version: int, pairs: int, draws: int, beta: float, size=(64, 128)) -> dict:
    conditioning = PromptConditioning.from_pipeline(pipe, pipe.unet.device)
    kinds = {"scene": WorldPairs, "crop": WorldCropPairs}
    result = {}
    for kind, source_class in kinds.items():
        batch = source_class(*size, batch_size=pairs, split="val", seed=0, version=version)(0)
        for mode in MODES:
            total = 0.0
            for draw in range(draws):
                for start in range(0, pairs, CHUNK):
                    rows = range(start, min(start + CHUNK, pairs))
                    chunk = {k: v[rows.start:rows.stop] for k, v in batch.items()}
                    loss = adapter_loss(pipe, conditioning, chunk, RowRandom(SEED, draw, rows), mode=mode, beta=beta)
                    total += loss.item() * len(rows)
            result[f"{kind}_{mode}"] = round(total / (pairs * draws), 5)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--world-version", type=int, default=2, choices=WORLD_VERSIONS)
    parser.add_argument("--pairs", type=int, default=32, help="val pairs per kind")
    parser.add_argument("--draws", type=int, default=4, help="noise and timestep draws per pair")
    parser.add_argument("--beta", type=float, default=10.0, help="categorical class prior")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    pipe = AMAdapterPipeline.from_pretrained(args.model, dtype=torch.float32)
    result = heldout_losses(pipe, args.world_version, args.pairs, args.draws, args.beta)
    result.update(model=args.model, world_version=args.world_version, pairs=args.pairs, draws=args.draws,
                  beta=args.beta, seconds=round(time.perf_counter() - began, 1))  # fmt: skip
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
