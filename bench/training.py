"""Training throughput and memory.

    python -m bench.training [--quick]

1. Loader: stage 1 (UNet phase) of the demo preset on world scenes (64x128,
   global batch 8) with 0 and 2 DataLoader workers: steps/s and the data-wait
   share (time the step loop waits for its batch / step time), from the run's
   ``loss.jsonl`` after warm-up steps; and the time to build one batch, which
   says how many workers a faster step (a GPU's) needs to keep waiting near 0.
2. Stage-2 peak memory per step, adapter checkpointing off and on, measured:
   each configuration in a fresh process; the peak resident set of one
   training step (high-water mark reset through ``/proc/self/clear_refs`` after
   set-up, minus the resident set before the step). The demo preset through the
   real ``adapter_loss`` (VAE encode included), and the SD1.5 architecture
   (UNet + structure encoder + adapter, random weights; latents given) at a
   small size.
3. Kept-for-backward bytes at SD1.5 512x1024, exact and without compute: the
   same forwards on meta tensors, summing every tensor autograd saves (model
   weights excluded: they are resident anyway). Meta tensors take the math
   attention path, which keeps each L x 2L probability matrix; CPU and GPU
   training runs take fused attention, which keeps O(L), so unmasked attention
   is routed to the fused CPU kernel's meta form here. Stage 2 per target row
   (with its exemplar row) with and without adapter checkpointing; stage 1 per
   row with and without UNet gradient checkpointing; fp32 and all-bf16.

The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch.nn import functional as F

from amadapter.models import attention_processors
from amadapter.pipelines.exemplar_forward import predict_with_exemplars
from amadapter.models.matcher import AppearanceMatchingAdapter
from amadapter.pipelines.model_factory import build_pipeline
from amadapter.models.structure_encoder import StructureEncoder
from amadapter.pipelines.structure_guidance import unet_with_control
from amadapter.training.conditioning import PromptConditioning
from amadapter.training.data import WorldPairs, WorldScenes
from amadapter.training.loop import LossLog, PhaseOptions
from amadapter.training.noise import RowRandom
from amadapter.training.stage1 import Stage1Options, train_structure
from amadapter.training.stage2 import adapter_loss
from bench.sampler import SD15_UNET, SD15_VAE
from bench.memory import status_mb

GIB = 2**30


LOADER_BATCH = 8


def loader_benchmark(workers: int, steps: int, warmup: int) -> dict:
    """steps/s and data-wait share of demo stage 1 with ``workers`` loader processes."""
    pipe = build_pipeline("demo", seed=0)
    with tempfile.TemporaryDirectory() as run_dir:
        options = Stage1Options(unet=PhaseOptions(steps=warmup + steps, lr=1e-4, log_every=1,
                                                  checkpoint_every=10**9, loader_workers=workers))
        train_structure(pipe, WorldScenes(64, 128, LOADER_BATCH, seed=0), run_dir, options, print_fn=lambda _: None)
        rows = LossLog(run_dir).rows()[warmup:]
    seconds = sum(r["s_per_step"] for r in rows)
    return {"steps_per_s": len(rows) / seconds,
            "data_wait_share": sum(r["data_wait_share"] * r["s_per_step"] for r in rows) / seconds}


def batch_build_seconds(batches: int = 4) -> float:
    """Seconds to build one such batch in the calling process (what a worker does per item)."""
    source = WorldScenes(64, 128, LOADER_BATCH, seed=0)
    start = time.perf_counter()
    for step in range(batches):
        source(step)
    return (time.perf_counter() - start) / batches


# --- 2: measured peak of one stage-2 step (run in a fresh process each) ---


def measure_step_peak(config: str, checkpointed: bool, size: tuple[int, int]) -> dict:
    """Peak MB above the set-up's resident set during one stage-2 training step."""
    torch.manual_seed(0)
    if config == "demo":
        pipe = build_pipeline("demo", seed=0)
        for module in (pipe.unet, pipe.vae, pipe.structure_encoder, pipe.prompt_embeds):
            module.requires_grad_(False)
        pipe.adapter.gradient_checkpointing = checkpointed
        batch = WorldPairs(*size, batch_size=4, seed=0)(0)
        conditioning = PromptConditioning.from_pipeline(pipe, "cpu")

        def step():
            adapter_loss(pipe, conditioning, batch, RowRandom(0, 0, range(4))).backward()
    else:
        unet, adapter, inputs = _sd15_stage2(size, rows=1, device="cpu", dtype=torch.float32)
        adapter.gradient_checkpointing = checkpointed

        def step():
            predict_with_exemplars(unet, adapter, *inputs, mode="am_adapter").float().square().mean().backward()

    open("/proc/self/clear_refs", "w").write("5")  # high-water mark := current resident set
    before = status_mb("VmRSS")
    start = time.perf_counter()
    step()
    return {"peak_mb": status_mb("VmHWM") - before, "step_s": time.perf_counter() - start}


def measured_peak(config: str, checkpointed: bool, size: tuple[int, int]) -> dict:
    command = [sys.executable, "-m", "bench.training", "--measure", config, "--size", f"{size[0]}x{size[1]}"]
    out = subprocess.run(command + (["--checkpointed"] if checkpointed else []), check=True, capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parents[1]).stdout
    return json.loads(out.strip().splitlines()[-1])


# --- 3: kept-for-backward bytes on meta tensors ---


def _sd15_stage2(size, rows: int, device, dtype):
    """Frozen SD1.5 UNet, an adapter and stage-2 inputs for ``rows`` targets (+ their exemplars)."""
    with torch.device(device):
        unet = UNet2DConditionModel(**SD15_UNET).to(dtype).requires_grad_(False)
        adapter = AppearanceMatchingAdapter(heads=8, max_tokens=2048).to(dtype)
        latent = (size[0] // 8, size[1] // 8)
        target, exemplar = torch.randn(rows, 4, *latent, dtype=dtype), torch.randn(rows, 4, *latent, dtype=dtype)
        embeds = torch.randn(rows, 77, 768, dtype=dtype)
        control = torch.randn(rows, 320, *latent, dtype=dtype)  # the structure encoder's output (frozen)
        timesteps = torch.full((rows,), 500)
    labels = torch.randint(0, 19, (2, rows, *size), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    return unet, adapter, (target, exemplar, timesteps, embeds, control, control, labels[0], labels[1])


def _fused_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
    if attn_mask is not None or dropout_p or is_causal or kwargs:
        return _MATH_ATTENTION(query, key, value, attn_mask, dropout_p, is_causal, scale=scale, **kwargs)
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, scale=scale)[0]


_MATH_ATTENTION = F.scaled_dot_product_attention


@contextmanager
def kept_bytes(modules):
    """Counts the bytes autograd saves (``counter["kept"]``), weights of ``modules`` excluded;
    ``counter["adapter_layers"]``: per adapter-attention call, the bytes it saves alone."""
    weights = {id(p) for m in modules for p in m.parameters()}
    counter = {"kept": 0, "adapter_layers": []}

    def pack(tensor):
        base = tensor._base if tensor._base is not None else tensor
        if id(base) not in weights:
            counter["kept"] += tensor.numel() * tensor.element_size()
        return tensor

    processor = attention_processors.AugmentedSelfAttnProcessor
    adapter_attention = processor._adapter_attention

    def counted(self, *args):
        start = counter["kept"]
        out = adapter_attention(self, *args)
        counter["adapter_layers"].append(counter["kept"] - start)
        return out

    processor._adapter_attention, F.scaled_dot_product_attention = counted, _fused_attention
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield counter
    finally:
        processor._adapter_attention, F.scaled_dot_product_attention = adapter_attention, _MATH_ATTENTION


def stage2_kept(size, checkpointed: bool, dtype) -> dict:
    unet, adapter, inputs = _sd15_stage2(size, rows=1, device="meta", dtype=dtype)
    adapter.gradient_checkpointing = checkpointed
    with kept_bytes([unet, adapter]) as counter:
        predict_with_exemplars(unet, adapter, *inputs, mode="am_adapter")
    # a checkpointed layer keeps nothing inside; its recomputation in backward holds what
    # the plain layer keeps, one layer at a time
    return {"kept_gib": counter["kept"] / GIB, "largest_adapter_layer_gib": max(counter["adapter_layers"]) / GIB}


def stage1_kept(size, gradient_checkpointing: bool, dtype) -> dict:
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET).to(dtype)
        encoder = StructureEncoder(out_channels=320).to(dtype)
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    latent = (size[0] // 8, size[1] // 8)
    with torch.device("meta"):
        noisy, embeds = torch.randn(1, 4, *latent, dtype=dtype), torch.randn(1, 77, 768, dtype=dtype)
        one_hot = torch.randn(1, 20, *size, dtype=dtype)  # the encoder's input: one channel per class + ignore
    with kept_bytes([unet, encoder]) as counter:
        control = encoder(one_hot)
        unet_with_control(unet, noisy, torch.full((1,), 500, device="meta"), embeds, control)
    return {"kept_gib": counter["kept"] / GIB}


def parameter_gib(config: dict, cls, bytes_per: int) -> float:
    with torch.device("meta"):
        return sum(p.numel() for p in cls(**config).parameters()) * bytes_per / GIB


def largest_batches(kept: dict) -> dict:
    """Largest batch per 80 GB GPU from the kept bytes and the resident weights (see RESULTS.md)."""
    unet_fp32 = parameter_gib(SD15_UNET, UNet2DConditionModel, 4)
    vae_fp32 = parameter_gib(SD15_VAE, AutoencoderKL, 4)
    text_encoder, context = 0.46, 2.0  # CLIP ViT-L/14 text model fp32; CUDA context, workspaces, fragmentation
    budget = 80 * 1e9 / GIB
    s1_fixed = 4 * unet_fp32 + vae_fp32 + text_encoder + context  # weights, grads, 2 Adam moments
    s1_fixed_8bit = 2.5 * unet_fp32 + vae_fp32 + text_encoder + context  # 8-bit moments: 2 bytes per weight
    s2_fixed = unet_fp32 + vae_fp32 + text_encoder + context  # adapter and its Adam: 0.5 MB
    s2_fixed_bf16 = (unet_fp32 + vae_fp32 + text_encoder) / 2 + context  # frozen weights held in bf16
    s2 = kept["stage2_fp32"]
    return {
        "unet_fp32_gib": unet_fp32,
        "stage1_fixed_gib": s1_fixed,
        "stage1_batch_fp32": int((budget - s1_fixed) // kept["stage1_fp32"]["kept_gib"]),
        "stage1_batch_fp32_unet_checkpointing": int((budget - s1_fixed) // kept["stage1_fp32_ckpt"]["kept_gib"]),
        "stage1_batch_bf16_unet_checkpointing_8bit_adam": int(
            (budget - s1_fixed_8bit) // kept["stage1_bf16_ckpt"]["kept_gib"]),
        "stage2_fixed_gib": s2_fixed,
        "stage2_batch_fp32_plain": int((budget - s2_fixed) // s2["plain"]["kept_gib"]),
        "stage2_batch_fp32_adapter_checkpointing": int((budget - s2_fixed) // _checkpointed_row(s2)),
        "stage2_batch_bf16_adapter_checkpointing": int((budget - s2_fixed_bf16) // _checkpointed_row(kept["stage2_bf16"])),
    }


def _checkpointed_row(stage2: dict) -> float:
    """GiB per target row with adapter checkpointing: what stays kept, plus the largest
    layer's adapter activations, which its recomputation in backward holds for a moment."""
    return stage2["checkpointed"]["kept_gib"] + stage2["plain"]["largest_adapter_layer_gib"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps, SD1.5 shape at 64x128")
    parser.add_argument("--measure", choices=("demo", "sd15"), help=argparse.SUPPRESS)  # child process
    parser.add_argument("--checkpointed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", default="64x128", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        size = tuple(int(v) for v in args.size.split("x"))
        print(json.dumps(measure_step_peak(args.measure, args.checkpointed, size)))
        return

    steps, warmup = (4, 2) if args.quick else (8, 2)
    loader = {workers: loader_benchmark(workers, steps, warmup) for workers in (0, 2)}
    for workers, result in loader.items():
        print(f"loader, demo stage 1, {workers} workers: {result['steps_per_s']:.3f} steps/s, "
              f"data wait {result['data_wait_share']:.1%}")
    build_s = batch_build_seconds()
    print(f"building one batch of {LOADER_BATCH} world scenes: {build_s:.3f} s")

    sd15_small = (64, 128) if args.quick else (128, 256)
    peaks = {}
    for config, size in (("demo", (64, 128)), ("sd15", sd15_small)):
        for checkpointed in (False, True):
            peaks[(config, checkpointed)] = measured_peak(config, checkpointed, size)
            print(f"stage-2 step peak, {config} {size[0]}x{size[1]}, adapter checkpointing {checkpointed}: "
                  f"{peaks[(config, checkpointed)]['peak_mb']:.0f} MB ({peaks[(config, checkpointed)]['step_s']:.1f} s)")

    full = (512, 1024)
    kept = {
        "stage2_fp32": {name: stage2_kept(full, ck, torch.float32) for name, ck in (("plain", False), ("checkpointed", True))},
        "stage2_bf16": {name: stage2_kept(full, ck, torch.bfloat16) for name, ck in (("plain", False), ("checkpointed", True))},
        "stage1_fp32": stage1_kept(full, False, torch.float32),
        "stage1_fp32_ckpt": stage1_kept(full, True, torch.float32),
        "stage1_bf16_ckpt": stage1_kept(full, True, torch.bfloat16),
    }
    print("kept for backward at SD1.5 512x1024 (GiB per row):", json.dumps(kept))
    batches = largest_batches(kept)
    print("largest batch per 80 GB:", json.dumps(batches))

    demo_plain, demo_ck = peaks[("demo", False)]["peak_mb"], peaks[("demo", True)]["peak_mb"]
    sd_plain, sd_ck = peaks[("sd15", False)]["peak_mb"], peaks[("sd15", True)]["peak_mb"]
    print(json.dumps({
        "steps_per_s_workers0": loader[0]["steps_per_s"],
        "steps_per_s_workers2": loader[2]["steps_per_s"],
        "data_wait_share": loader[2]["data_wait_share"],
        "data_wait_share_workers0": loader[0]["data_wait_share"],
        "batch_build_s": build_s,
        "stage2_peak_mb_plain": demo_plain,
        "stage2_peak_mb_checkpointed": demo_ck,
        "stage2_peak_cut": 1 - demo_ck / demo_plain,
        "sd15_size": list(sd15_small),
        "sd15_stage2_peak_mb_plain": sd_plain,
        "sd15_stage2_peak_mb_checkpointed": sd_ck,
        "sd15_stage2_peak_cut": 1 - sd_ck / sd_plain,
        "sd15_512x1024_stage2_kept_gib_plain": kept["stage2_fp32"]["plain"]["kept_gib"],
        "sd15_512x1024_stage2_kept_gib_checkpointed": kept["stage2_fp32"]["checkpointed"]["kept_gib"],
        **batches,
        "quick": args.quick,
    }))


if __name__ == "__main__":
    main()
