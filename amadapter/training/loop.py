"""The optimisation loop shared by both stages: AdamW (or 8-bit AdamW), warmup +
schedule, gradient clipping, mixed precision, data-parallel processes and
gradient accumulation (``accelerate``), a loader with worker processes, EMA,
validation with a best checkpoint, a JSONL loss log, checkpoints and resume.

A *phase* is one optimisation with one optimizer (stage 1 has a VAE phase and a
UNet phase, stage 2 one adapter phase). The caller supplies a batch source (its
global batch is the batch of one optimizer step, over all processes and
micro-steps) and ``loss_fn(batch, random)``, the scalar loss of a micro-batch
whose per-row randomness is ``random`` (``noise.RowRandom``). Everything random
derives from (seed, step, row), so resuming from a checkpoint at step k, with
any process count, continues as an uninterrupted run would (to float rounding
when the count changes: the sum of the gradient is split differently).
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
from accelerate import Accelerator
from torch import nn

from amadapter.training.checkpoints import (
    Checkpoint,
    best_checkpoint,
    load_ema,
    load_optimizer,
    save_best,
    save_checkpoint,
)
from amadapter.training.data import RowSource
from amadapter.training.ema import EMA
from amadapter.training.loader import Shard, micro_batches
from amadapter.training.noise import RowRandom

LOG_FILE = "loss.jsonl"
OPTIMIZERS = ("adamw", "adamw8bit", "sgd")
SGD_MOMENTUM = 0.9


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
    gradient_accumulation: int = 1  # micro-steps per optimizer step (per process)
    loader_workers: int = 0  # DataLoader worker processes (0: batches built in the step loop)
    prefetch_factor: int = 2  # batches each worker builds ahead
    ema_decay: float | None = None  # None: no EMA; else the saved model holds the moving average
    optimizer: str = "adamw"  # or "adamw8bit" (needs bitsandbytes), or "sgd"
    validate_every: int = 0  # steps between validations (0: none)


@dataclass(frozen=True)
class Validation:
    """``score()`` of the current weights, lower is better, logged as ``val_{metric}``."""

    metric: str
    score: Callable[[], float]


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


def make_optimizer(options: PhaseOptions, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if options.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
    if options.optimizer == "adamw8bit":
        try:
            import bitsandbytes  # optional: 8-bit moments, a quarter of AdamW's optimizer memory
        except ImportError as err:
            raise SystemExit("--optimizer adamw8bit needs bitsandbytes (pip install bitsandbytes)") from err
        return bitsandbytes.optim.AdamW8bit(params, lr=options.lr, weight_decay=options.weight_decay)
    if options.optimizer == "sgd":  # steps linear in the gradients: runs compare at rounding
        return torch.optim.SGD(params, lr=options.lr, momentum=SGD_MOMENTUM, weight_decay=options.weight_decay)
    raise ValueError(f"unknown optimizer {options.optimizer!r}; choose one of {OPTIMIZERS}")


class LossLog:
    """Append-only JSONL of {phase, step, loss, lr, s_per_step, data_wait_share, time}
    (and ``val_{metric}`` at validation steps, which are always logged). Written by the
    main process. ``s_per_step`` and ``data_wait_share`` time the steps alone.

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


class LossModule(nn.Module):
    """The trainable components as one module whose forward is the loss: DDP then sees
    every use of their parameters, wherever in the pipeline they run."""

    def __init__(self, trainable: dict[str, nn.Module], loss_fn: Callable[[dict, RowRandom], torch.Tensor]):
        super().__init__()
        self.parts = nn.ModuleDict(trainable)
        self.loss_fn = loss_fn

    def forward(self, batch: dict, random: RowRandom) -> torch.Tensor:
        return self.loss_fn(batch, random)


def run_phase(
    run_dir: str | Path,
    phase: str,
    trainable: dict[str, nn.Module],
    saved: dict[str, nn.Module],
    source: RowSource,
    loss_fn: Callable[[dict, RowRandom], torch.Tensor],
    options: PhaseOptions,
    accelerator: Accelerator,
    seed: int = 0,
    resume_from: Checkpoint | None = None,
    phase_order: tuple[str, ...] = (),
    extra: Callable[[], dict] | None = None,
    validation: Validation | None = None,
    print_fn: Callable[[str], None] = print,
) -> int:
    """Optimise ``trainable`` on ``source`` with ``loss_fn`` for ``options.steps`` steps of ``phase``.

    ``saved``: every component a checkpoint holds (the trainable ones plus any
    trained earlier in the run). ``resume_from``: a checkpoint of this phase
    whose weights the caller has already loaded; its optimizer state, EMA and
    step are restored here. ``extra()`` adds JSON fields to each checkpoint's
    state. With EMA the trainable weights hold the averages when this returns.
    Returns the number of finished steps (``options.steps``).
    """
    main = accelerator.is_main_process
    say = print_fn if main else (lambda _line: None)
    params = trainable_parameters(trainable)
    optimizer = make_optimizer(options, params)
    start = 0
    log = LossLog(run_dir)
    order = phase_order or (phase,)
    if resume_from is not None:
        load_optimizer(resume_from, optimizer)
        start = resume_from.step
        if main:
            log.truncate_after(order, phase, start)
        say(f"[{phase}] resuming at step {start} from {resume_from.path} ({accelerator.num_processes} processes)")
    best = best_checkpoint(run_dir, phase)
    best_score = best.extra["score"] if best is not None and best.step <= start else math.inf
    # DDP starts every process from the main process's weights (fresh modules may differ)
    model, optimizer = accelerator.prepare(LossModule(trainable, loss_fn), optimizer)
    ema = EMA(trainable, options.ema_decay) if options.ema_decay else None
    if ema is not None and resume_from is not None:
        load_ema(resume_from, ema)
    shard = Shard(accelerator.process_index, accelerator.num_processes, options.gradient_accumulation)
    loader = micro_batches(source, shard, start, options.steps, options.loader_workers, options.prefetch_factor,
                           pin_memory=accelerator.device.type == "cuda")
    batches = iter(loader)
    say(f"[{phase}] global batch {source.batch_size} = {shard.world_size} processes x {shard.accumulation} "
        f"micro-steps x {shard.micro_batch_size(source.batch_size)} rows, {options.loader_workers} loader workers")
    model.train()
    window: list[float] = []
    window_time, window_wait = 0.0, 0.0  # of the steps alone: validation and checkpoints excluded
    for step in range(start, options.steps):
        step_start = time.perf_counter()
        lr = learning_rate(options, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=accelerator.device)
        for micro in range(shard.accumulation):
            wait_start = time.perf_counter()
            batch = next(batches)
            window_wait += time.perf_counter() - wait_start
            random = RowRandom(seed, step, shard.rows(source.batch_size, micro))
            # gradients are averaged over processes once per optimizer step, at its last micro-step
            last = micro == shard.accumulation - 1
            with accelerator.no_sync(model) if not last else nullcontext():
                with accelerator.autocast():
                    loss = model(batch, random)
                accelerator.backward(loss / shard.accumulation)
            loss_sum += loss.detach().float()
        step_loss = accelerator.reduce(loss_sum / shard.accumulation, "mean").item()
        if not math.isfinite(step_loss):
            raise FloatingPointError(f"[{phase}] loss is {step_loss} at step {step}; not saving it")
        if options.grad_clip:
            accelerator.clip_grad_norm_(params, options.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update()
        window.append(step_loss)
        window_time += time.perf_counter() - step_start
        done = step + 1
        validate = validation is not None and options.validate_every and done % options.validate_every == 0
        row = {}
        if done % options.log_every == 0 or done == options.steps or validate:  # every row has a loss
            row = {"loss": sum(window) / len(window), "lr": lr, "s_per_step": window_time / len(window),
                   "data_wait_share": window_wait / window_time}
            say(f"[{phase}] step {done}/{options.steps} loss {row['loss']:.5f} lr {lr:.2e} "
                f"{row['s_per_step']:.3f} s/step, data wait {row['data_wait_share']:.0%}")
            window, window_time, window_wait = [], 0.0, 0.0
        if validate:
            score = _validate(validation, trainable, ema, main)
            if main:
                row[f"val_{validation.metric}"] = score
                say(f"[{phase}] step {done} validation {validation.metric} {score:.4f} (best {best_score:.4f})")
                if score < best_score:
                    best_score = score
                    save_best(run_dir, phase, done, saved, score, extra() if extra else None, ema)
            accelerator.wait_for_everyone()
        if main and row:
            log.write({"phase": phase, "step": done, **row, "time": time.time()})
        if done % options.checkpoint_every == 0 or done == options.steps:
            if main:
                save_checkpoint(run_dir, phase, done, saved, optimizer, extra() if extra else None,
                                keep=options.keep_checkpoints, ema=ema)
            accelerator.wait_for_everyone()  # no process runs ahead of a checkpoint being written
    if ema is not None:
        ema.copy_to_weights()
    accelerator.wait_for_everyone()
    return options.steps


def _validate(validation: Validation, trainable: dict[str, nn.Module], ema: EMA | None, main: bool) -> float:
    """The score on the main process (others get nan); with EMA, of the averaged weights."""
    score = math.nan
    if main:
        was_training = {name: m.training for name, m in trainable.items()}
        for module in trainable.values():
            module.eval()
        with torch.no_grad(), ema.swapped_in() if ema is not None else nullcontext():
            score = float(validation.score())
        for name, module in trainable.items():
            module.train(was_training[name])
    return score

