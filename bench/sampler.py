"""Sampler benchmark: seconds per target image by mode, exemplar sharing and
inversion cache, all in one process and one run (medians of interleaved repeats).

    python -m bench.sampler [--quick] [--threads N]
    python -m bench.sampler --sd15-shape [--threads N]

Default run: the ``demo`` preset (random weights: timing does not depend on
them), 64x128 images, 20 DDIM steps, guidance 7.5. Configurations:

- ``none``: structure only, 4 targets per call (and 1, for the k=1 comparison);
- ``augmented``: 4 targets sharing one exemplar, inversion cached;
- ``am_adapter`` k=1 and k=4 targets per exemplar, inversion cached;
- ``am_adapter`` k=1 without a cache hit (a fresh cache per call);
- ``am_adapter`` k=1 and k=4 with the adapter limited to 32-token layers (4x8).

Also FLOPs per image of one denoising step (torch's FlopCounterMode), which do
not depend on the machine's load. ``--sd15-shape`` runs one UNet forward with the
published SD1.5 UNet architecture (random weights) at 512x1024 with rows
[target-uncond, target-cond reading the exemplar, exemplar] in mode am_adapter
(adapter at <= 2048-token layers), and one structure-only step (2 rows), printing
time and peak memory. The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import numpy as np
import torch
from diffusers import UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode

from amadapter.exemplar_forward import unet_rows
from amadapter.inversion_cache import InversionCache
from amadapter.matcher import AppearanceMatchingAdapter
from amadapter.model_factory import build_pipeline
from amadapter.structure_encoder import StructureEncoder

# runwayml/stable-diffusion-v1-5 unet/config.json (the architecture fields)
SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    attention_head_dim=8,
    cross_attention_dim=768,
    norm_num_groups=32,
)


def block_labels(rng: np.random.Generator, height: int, width: int, cell: int = 16) -> np.ndarray:
    """A label map of cell x cell blocks with random train IDs."""
    coarse = rng.integers(0, 19, size=(height // cell, width // cell)).astype(np.uint8)
    return np.kron(coarse, np.ones((cell, cell), dtype=np.uint8))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sampler_benchmark(quick: bool) -> dict:
    steps, repeats = (4, 2) if quick else (20, 5)
    height, width = 64, 128
    pipe = build_pipeline("demo")
    pipe.set_progress_bar_config(disable=True)
    rng = np.random.default_rng(0)
    targets = [block_labels(rng, height, width) for _ in range(4)]
    ex_image = [rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)]
    ex_labels = [block_labels(rng, height, width)]

    def render(n, mode, steps=steps, **kw):
        return pipe(targets[:n], ex_image, ex_labels, assignment=[0] * n, mode=mode, seeds=list(range(n)),
                    num_inference_steps=steps, **kw)

    def uncached(n, mode, **kw):
        pipe.inversion_cache = InversionCache()
        return render(n, mode, **kw)

    configs = {  # name: (targets per call, call)
        "none": (4, lambda **kw: render(4, "none", **kw)),
        "none_b1": (1, lambda **kw: render(1, "none", **kw)),
        "augmented": (4, lambda **kw: render(4, "augmented", **kw)),
        "am_k1": (1, lambda **kw: render(1, "am_adapter", **kw)),
        "am_k4": (4, lambda **kw: render(4, "am_adapter", **kw)),
        "am_k1_no_cache": (1, lambda **kw: uncached(1, "am_adapter", **kw)),
        "am_k1_max_tokens_32": (1, lambda **kw: render(1, "am_adapter", adapter_max_tokens=32, **kw)),
        "am_k4_max_tokens_32": (4, lambda **kw: render(4, "am_adapter", adapter_max_tokens=32, **kw)),
    }
    flops = {}
    for name, (n, call) in configs.items():
        call(steps=1, output_type="latent")  # warms the cache for the 1-step schedule
        with FlopCounterMode(display=False) as counter:
            call(steps=1, output_type="latent")
        flops[name] = counter.get_total_flops() / n
        call()  # warm-up at full length (fills the inversion cache)

    wall: dict[str, list[float]] = {name: [] for name in configs}
    cpu: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(repeats):
        for name, (n, call) in configs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            call()
            wall[name].append((time.perf_counter() - start) / n)
            cpu[name].append((time.process_time() - start_cpu) / n)
    s = {name: statistics.median(v) for name, v in wall.items()}
    c = {name: statistics.median(v) for name, v in cpu.items()}
    result = {f"s_per_image_{name}": round(v, 4) for name, v in s.items()}
    result.update(
        # process CPU time: less disturbed than wall time by other jobs on a shared machine
        cpu_ratio_am_k1_vs_none=round(c["am_k1"] / c["none_b1"], 3),
        cpu_ratio_am_k4_vs_none=round(c["am_k4"] / c["none"], 3),
        cpu_ratio_am_k1_max_tokens_32_vs_none=round(c["am_k1_max_tokens_32"] / c["none_b1"], 3),
        cpu_ratio_am_k4_max_tokens_32_vs_none=round(c["am_k4_max_tokens_32"] / c["none"], 3),
    )
    result.update(
        ratio_am_k1_vs_none=round(s["am_k1"] / s["none_b1"], 3),
        ratio_am_k4_vs_none=round(s["am_k4"] / s["none"], 3),
        ratio_augmented_vs_none=round(s["augmented"] / s["none"], 3),
        ratio_am_k1_max_tokens_32_vs_none=round(s["am_k1_max_tokens_32"] / s["none_b1"], 3),
        ratio_am_k4_max_tokens_32_vs_none=round(s["am_k4_max_tokens_32"] / s["none"], 3),
        inversion_cache_speedup=round(s["am_k1_no_cache"] / s["am_k1"], 3),
        flop_ratio_am_k1_vs_none=round(flops["am_k1"] / flops["none_b1"], 3),
        flop_ratio_am_k4_vs_none=round(flops["am_k4"] / flops["none"], 3),
        flop_ratio_am_k1_max_tokens_32_vs_none=round(flops["am_k1_max_tokens_32"] / flops["none_b1"], 3),
        flop_ratio_am_k4_max_tokens_32_vs_none=round(flops["am_k4_max_tokens_32"] / flops["none"], 3),
        gflop_per_image_step_none=round(flops["none"] / 1e9, 3),
        gflop_per_image_step_am_k4=round(flops["am_k4"] / 1e9, 3),
        model="demo preset, random weights",
        unet_params=sum(p.numel() for p in pipe.unet.parameters()),
        adapter_max_tokens=pipe.adapter.config.max_tokens,
        size=[height, width],
        steps=steps,
        guidance=7.5,
        repeats=repeats,
    )
    result["targets_met"] = {
        "ratio_am_k4_vs_none<=1.35": result["ratio_am_k4_vs_none"] <= 1.35,
        "ratio_am_k1_vs_none<=1.8": result["ratio_am_k1_vs_none"] <= 1.8,
    }
    return result


def sd15_shape_benchmark() -> dict:
    height, width = 512, 1024
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET).eval()
    encoder = StructureEncoder(out_channels=320).eval()
    adapter = AppearanceMatchingAdapter(heads=8, max_tokens=2048).eval()
    rss_weights = peak_rss_mb()
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(np.stack([block_labels(rng, height, width, 64) for _ in range(2)]))
    adapter_layers = []
    for e in adapter.encoders.values():
        e.register_forward_hook(lambda m, i, o: adapter_layers.append(i[0].shape[-1]))
    with torch.no_grad():
        control = encoder.encode_labels(labels)
        latents = torch.randn(3, 4, height // 8, width // 8)
        embeds = torch.randn(3, 77, 768)
        rows = [control[0], control[0], control[1]]
        start = time.perf_counter()
        unet_rows(unet, latents, 500, embeds, torch.stack(rows), torch.tensor([-1, 2, -1]),
                  "am_adapter", labels[[0, 0, 1]], adapter)
        s_am = time.perf_counter() - start
        rss_am = peak_rss_mb()
        start = time.perf_counter()
        unet_rows(unet, latents[:2], 500, embeds[:2], torch.stack(rows[:2]), torch.tensor([-1, -1]), "none")
        s_none = time.perf_counter() - start
    return {
        "model": "SD1.5 UNet architecture (published config), random weights; structure encoder 320; adapter 8 heads",
        "size": [height, width],
        "unet_params": sum(p.numel() for p in unet.parameters()),
        "s_am_adapter_step_3_rows": round(s_am, 2),
        "s_none_step_2_rows": round(s_none, 2),
        "adapter_layers_tokens": adapter_layers,
        "peak_rss_mb_weights": round(rss_weights),
        "peak_rss_mb_after_adapter_step": round(rss_am),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 steps, 2 repeats")
    parser.add_argument("--sd15-shape", action="store_true", help="one step at SD1.5 scale, 512x1024")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: the shared 2-core machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = sd15_shape_benchmark() if args.sd15_shape else sampler_benchmark(args.quick)
    result["threads"] = args.threads
    result["machine"] = "CPU"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
