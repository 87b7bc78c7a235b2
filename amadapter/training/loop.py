"""The optimisation loop shared by both stages: AdamW, warmup + schedule,
gradient clipping, mixed precision, a JSONL loss log, checkpoints and resume.

A *phase* is one optimisation with one optimizer (stage 1 has a VAE phase and a
UNet phase, stage 2 one adapter phase). The caller supplies ``loss_fn(step)``,
which builds that step's batch and returns the scalar loss; everything about
the step that is random derives from the step number, so resuming from a
checkpoint at step k continues exactly as an uninterrupted run would.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from amadapter.training.checkpoints import Checkpoint, load_optimizer, save_checkpoint

LOG_FILE = "loss.jsonl"
MIXED_PRECISION = {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class PhaseOptions:
    steps: int
    lr: float
    warmup_steps: int = 0
    schedule: str = "constant"  # "constant" or "cosine" (decays to min_lr_ratio * lr)
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    mixed_precision: str = "no"  # "no", "fp16" or "bf16": autocast compute, fp32 trainable weights


def learning_rate(options: PhaseOptions, step: int) -> float:
    if options.warmup_steps and step < options.warmup_steps:
        return options.lr * (step + 1) / options.warmup_steps
    if options.schedule == "constant":
        return options.lr
    if options.schedule != "cosine":
        raise ValueError(f"unknown schedule {options.schedule!r}")
    span = max(options.steps - options.warmup_steps, 1)
    progress = min(max(step - options.warmup_steps, 0) / span, 1.0)
    floor = options.min_lr_ratio
    return options.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def trainable_parameters(modules: dict[str, nn.Module]) -> list[nn.Parameter]:
    return [p for m in modules.values() for p in m.parameters() if p.requires_grad]


def count_trainable(modules: dict[str, nn.Module]) -> int:
    return sum(p.numel() for p in trainable_parameters(modules))


class LossLog:
    """Append-only JSONL of {phase, step, loss, lr, s_per_step, time}.

    On resume the lines past the checkpoint are dropped first, so the log never
    holds two histories of the same steps."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOG_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def truncate_after(self, phase_order: tuple[str, ...], phase: str, step: int) -> None:
        if not self.path.is_file():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            row = json.loads(line)
            rank, limit = phase_order.index(row["phase"]), phase_order.index(phase)
            if rank < limit or (rank == limit and row["step"] <= step):
                keep.append(line)
        self.path.write_text("".join(f"{line}\n" for line in keep))

    def write(self, row: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def rows(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines()]


def run_phase(
    run_dir: str | Path,
    phase: str,
    trainable: dict[str, nn.Module],
    saved: dict[str, nn.Module],
    loss_fn: Callable[[int], torch.Tensor],
    options: PhaseOptions,
    device: torch.device | str = "cpu",
    resume_from: Checkpoint | None = None,
    phase_order: tuple[str, ...] = (),
    extra: Callable[[], dict] | None = None,
    print_fn: Callable[[str], None] = print,
) -> int:
    """Optimise ``trainable`` with ``loss_fn`` for ``options.steps`` steps of ``phase``.

    ``saved``: every component a checkpoint holds (the trainable ones plus any
    trained earlier in the run). ``resume_from``: a checkpoint of this phase
    whose weights the caller has already loaded; its optimizer state and step
    are restored here. ``extra()`` adds JSON fields to each checkpoint's state.
    Returns the number of finished steps (``options.steps``).
    """
    device = torch.device(device)
    params = trainable_parameters(trainable)
    optimizer = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
    start = 0
    log = LossLog(run_dir)
    order = phase_order or (phase,)
    if resume_from is not None:
        load_optimizer(resume_from, optimizer)
        start = resume_from.step
        log.truncate_after(order, phase, start)
        print_fn(f"[{phase}] resuming at step {start} from {resume_from.path}")
    autocast_dtype = MIXED_PRECISION[options.mixed_precision]
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype is torch.float16)
    for module in trainable.values():
        module.train()
    window: list[float] = []
    window_start = time.perf_counter()
    for step in range(start, options.steps):
        lr = learning_rate(options, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        autocast = (
            torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
        )
        with autocast:
            loss = loss_fn(step)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"[{phase}] loss is {loss.item()} at step {step}; not saving it")
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        if options.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, options.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        window.append(loss.item())
        done = step + 1
        if done % options.log_every == 0 or done == options.steps:
            elapsed = time.perf_counter() - window_start
            row = {
                "phase": phase,
                "step": done,
                "loss": sum(window) / len(window),
                "lr": lr,
                "s_per_step": elapsed / len(window),
                "time": time.time(),
            }
            log.write(row)
            print_fn(f"[{phase}] step {done}/{options.steps} loss {row['loss']:.5f} "
                     f"lr {lr:.2e} {row['s_per_step']:.3f} s/step")
            window, window_start = [], time.perf_counter()
        if done % options.checkpoint_every == 0 or done == options.steps:
            save_checkpoint(run_dir, phase, done, saved, optimizer, extra() if extra else None,
                            keep=options.keep_checkpoints)
    return options.steps
