"""Processes for training: one ``accelerate.Accelerator`` per process.

Why accelerate rather than torch.distributed directly: ``accelerate launch``
starts the processes on one machine or many (``--num_machines``,
``--machine_rank``, ``--main_process_ip``) and sets up the process group with the
right backend (NCCL on GPUs, gloo on CPUs), puts each process on its device, and
supplies DDP wrapping, ``no_sync`` for gradient accumulation, mixed precision
(autocast, and the fp16 gradient scaler) and main-process barriers, the same
calls on one process with no launcher at all. It is what diffusers' own training
examples use, so users' launch configs (``accelerate config``) carry over; a
``torchrun`` launch works too (accelerate reads the same environment).
"""

from __future__ import annotations

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs

MIXED_PRECISION = ("no", "fp16", "bf16")


def make_accelerator(device: str = "cpu", mixed_precision: str = "no") -> Accelerator:
    """The process's accelerator. ``device``: "cpu", or "cuda" (each process its local GPU);
    "cuda:N" picks GPU N for a single-process run."""
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"unknown mixed precision {mixed_precision!r}; choose one of {MIXED_PRECISION}")
    cpu = device == "cpu" or not torch.cuda.is_available()
    if not cpu and ":" in device:
        torch.cuda.set_device(torch.device(device))
    # every trainable parameter takes part in every step's loss (stage 2: each block group
    # has a layer within max_tokens), so DDP can skip the per-step search for unused ones
    ddp = DistributedDataParallelKwargs(find_unused_parameters=False)
    return Accelerator(cpu=cpu, mixed_precision=mixed_precision, kwargs_handlers=[ddp])
