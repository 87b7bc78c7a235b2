"""GPU check for a lent accelerator: throughput and memory of the real sampling
path at SD1.5 shape, by batch size, with and without ``torch.compile``.

    python -m bench.gpu                      # on the GPU machine: SD1.5 shape, fp16, 512x1024
    python -m bench.gpu --device cpu --architecture tiny --size 32 64 --steps 1 --max-batch 2

Full ``AMAdapterPipeline`` calls (structure guidance, exemplar inversion on a cache
miss, lockstep denoising, VAE decode) with random weights in the published SD1.5
UNet and VAE architectures (timing does not depend on the weights), 20 DDIM
steps, guidance 7.5. Configurations: ``none`` (structure only), ``am_adapter``
with k = 1 and k = 4 targets per exemplar (fewer at batch sizes below k), on
the default exemplar path, each exemplar a cache miss. Batch sizes 1, 2, 4, ... up to ``--max-batch`` until the
device runs out of memory. Per (configuration, batch, compile): seconds per call
(one warm-up call first, then the median of ``--repeats``), images per second and
peak device memory. A wall budget (``--budget-s``) stops early and says so, so
the script fits the device time it is given. The last printed line is one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from amadapter.pipelines.inversion_cache import InversionCache
from amadapter.models.matcher import AppearanceMatchingAdapter
from amadapter.pipelines.model_factory import build_pipeline
from amadapter.pipelines.pipeline_amadapter import AMAdapterPipeline
from amadapter.models.prompt_embeddings import PromptEmbeddings
from amadapter.models.structure_encoder import StructureEncoder
from bench.sampler import SD15_UNET, SD15_VAE, block_labels

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
CONFIGS = {"none": ("none", None), "am_k1": ("am_adapter", 1), "am_k4": ("am_adapter", 4)}


def sd15_shape_pipeline() -> AMAdapterPipeline:
    torch.manual_seed(0)
    return AMAdapterPipeline(
        unet=UNet2DConditionModel(**SD15_UNET),
        vae=AutoencoderKL(**SD15_VAE),
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                clip_sample=False, set_alpha_to_one=False),
        structure_encoder=StructureEncoder(out_channels=320),
        adapter=AppearanceMatchingAdapter(heads=8, max_tokens=2048),
        prompt_embeds=PromptEmbeddings(seq_len=77, dim=768),
    )


def peak_memory_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def measure(pipe, device, config: str, batch: int, size, steps: int, repeats: int) -> dict:
    mode, k = CONFIGS[config]
    rng = np.random.default_rng(batch)
    targets = [block_labels(rng, *size, cell=8) for _ in range(batch)]
    exemplars = 0 if k is None else -(-batch // k)
    images = [rng.integers(0, 256, size=(*size, 3), dtype=np.uint8) for _ in range(exemplars)]
    labels = [block_labels(rng, *size, cell=8) for _ in range(exemplars)]

    def call():
        pipe.inversion_cache = InversionCache()  # every exemplar a miss: the job's common case
        kwargs = {} if k is None else dict(exemplar_images=images, exemplar_labels=labels,
                                           assignment=[i // k for i in range(batch)])
        pipe(targets, mode=mode, seeds=list(range(batch)), num_inference_steps=steps, output_type="np", **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    call()  # warm-up (and compilation, when compiled)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    s = statistics.median(seconds)
    return {"config": config, "batch": batch, "s_per_call": round(s, 3), "images_per_s": round(batch / s, 3),
            "peak_mb": peak_memory_mb(device)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float16")
    parser.add_argument("--architecture", choices=("sd15", "tiny"), default="sd15")
    # two integers, not "HxW" through pipeline.options: this module must not import Beam,
    # which the GPU machine lacks
    parser.add_argument("--size", type=int, nargs=2, default=(512, 1024), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--compile", choices=("off", "on", "both"), default="both")
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting new measurements after this")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    device = torch.device(args.device)
    pipe = sd15_shape_pipeline() if args.architecture == "sd15" else build_pipeline("tiny")
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device=device, dtype=DTYPES[args.dtype])
    rows, stopped = [], None
    for compiled in {"off": [False], "on": [True], "both": [False, True]}[args.compile]:
        if compiled:
            pipe.unet.compile()
        for config in CONFIGS:
            batch = 1
            while batch <= args.max_batch and stopped is None:
                if time.perf_counter() - began > args.budget_s:
                    stopped = f"wall budget {args.budget_s:.0f} s reached before {config} batch {batch}"
                    break
                try:
                    row = measure(pipe, device, config, batch, args.size, args.steps, args.repeats)
                except Exception as error:  # noqa: BLE001 - out of memory ends this configuration
                    if not is_out_of_memory(error):
                        raise
                    rows.append({"config": config, "batch": batch, "compiled": compiled, "out_of_memory": True})
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    break
                row["compiled"] = compiled
                rows.append(row)
                print(json.dumps(row), flush=True)
                batch *= 2
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "dtype": args.dtype,
        "architecture": args.architecture,
        "size": list(args.size),
        "torch": torch.__version__,
        "steps": args.steps,
        "rows": rows,
        "stopped_early": stopped,
        "seconds": round(time.perf_counter() - began, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
