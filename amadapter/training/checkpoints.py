"""Training checkpoints: trained weights, optimizer state and position, no pickle.

Layout under a run directory::

    checkpoints/{phase}-{step:07d}/
        {component}.safetensors      state dict of every component trained so far in the run
        {component}.ema.safetensors  its trained parameters' moving average (runs with EMA)
        optimizer.safetensors        the optimizer's tensors (Adam moments, step counts)
        state.json                   phase, step, the optimizer's other state, EMA updates, caller extras
    best/{phase}/                    the same, without optimizer, at the best validation score so far

The optimizer state is the same on every process of a data-parallel run (the
gradients are averaged before each step), so one process writes a checkpoint and
any number of processes resume from it.

A checkpoint is written in a temporary directory and renamed into place, so a
run killed while saving never leaves a partial checkpoint under a final name.
Resuming takes the latest checkpoint in phase order, then step order, or a chosen
one (``resume_point``), whose later checkpoints are then discarded.

These are training checkpoints; the finished model is saved separately in the
model-directory format (``pipeline.save_pretrained``).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from amadapter.training.ema import EMA

CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"
STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
EMA_SUFFIX = ".ema.safetensors"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    phase: str
    step: int
    extra: dict


def _name(phase: str, step: int) -> str:
    return f"{phase}-{step:07d}"


def save_checkpoint(
    run_dir: str | Path,
    phase: str,
    step: int,
    components: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    extra: dict | None = None,
    keep: int = 2,
    ema: EMA | None = None,
) -> Path:
    """Write a checkpoint after ``step`` finished steps of ``phase``; keep that phase's newest ``keep``."""
    final = _write(Path(run_dir) / CHECKPOINT_DIR, _name(phase, step), phase, step, components, optimizer,
                   extra, ema)
    same_phase = [c for c in list_checkpoints(run_dir) if c.phase == phase]
    for old in same_phase[:-keep] if keep > 0 else []:
        shutil.rmtree(old.path, ignore_errors=True)
    return final


def save_best(run_dir: str | Path, phase: str, step: int, components: dict[str, nn.Module], score: float,
              extra: dict | None = None, ema: EMA | None = None) -> Path:
    """Replace ``best/{phase}`` with these weights and their validation ``score``."""
    return _write(Path(run_dir) / BEST_DIR, phase, phase, step, components, None, {**(extra or {}), "score": score},
                  ema)


def best_checkpoint(run_dir: str | Path, phase: str) -> Checkpoint | None:
    path = Path(run_dir) / BEST_DIR / phase
    if not (path / STATE_FILE).is_file():
        return None
    state = json.loads((path / STATE_FILE).read_text())
    return Checkpoint(path, state["phase"], int(state["step"]), state.get("extra", {}))


def _write(root: Path, name: str, phase: str, step: int, components: dict[str, nn.Module],
           optimizer: torch.optim.Optimizer | None, extra: dict | None, ema: EMA | None) -> Path:
    final = root / name
    tmp = root / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for component, module in components.items():
        save_file(_cpu_state(module.state_dict()), str(tmp / f"{component}.safetensors"))
        if ema is not None and component in ema.shadow:
            save_file(_cpu_state(ema.state(component)), str(tmp / f"{component}{EMA_SUFFIX}"))
    state = {"phase": phase, "step": step, "extra": extra or {}}
    if optimizer is not None:
        tensors, state["optimizer"] = _split_optimizer_state(optimizer.state_dict())
        save_file(tensors, str(tmp / OPTIMIZER_FILE))
    if ema is not None:
        state["ema_updates"] = ema.updates
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def list_checkpoints(run_dir: str | Path, phases: tuple[str, ...] | None = None) -> list[Checkpoint]:
    """Complete checkpoints, oldest first; with ``phases``, only those phases, in that order."""
    root = Path(run_dir) / CHECKPOINT_DIR
    found = []
    for path in root.glob("*-*") if root.is_dir() else []:
        if path.name.startswith(".") or not (path / STATE_FILE).is_file():
            continue
        state = json.loads((path / STATE_FILE).read_text())
        if phases is not None and state["phase"] not in phases:
            continue
        found.append(Checkpoint(path, state["phase"], int(state["step"]), state.get("extra", {})))

    def order(c: Checkpoint):
        return (phases.index(c.phase) if phases else 0, c.phase, c.step)

    return sorted(found, key=order)


def latest_checkpoint(run_dir: str | Path, phases: tuple[str, ...] | None = None) -> Checkpoint | None:
    checkpoints = list_checkpoints(run_dir, phases)
    return checkpoints[-1] if checkpoints else None


def resume_point(run_dir: str | Path, phases: tuple[str, ...], chosen: str | Path | None = None,
                 discard_later: bool = False) -> Checkpoint | None:
    """The checkpoint a run resumes from: ``chosen`` (one of the run's checkpoint
    directories) or else the latest. With ``discard_later`` (the main process), the
    run's checkpoints after ``chosen`` are deleted: they belong to the history the
    resumed run replaces, and must not be mistaken for its latest."""
    if chosen is None:
        return latest_checkpoint(run_dir, phases)
    path = Path(chosen)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint (no {STATE_FILE})")
    state = json.loads((path / STATE_FILE).read_text())
    checkpoint = Checkpoint(path, state["phase"], int(state["step"]), state.get("extra", {}))
    if discard_later:
        rank = (phases.index(checkpoint.phase), checkpoint.step)
        for later in list_checkpoints(run_dir, phases):
            if (phases.index(later.phase), later.step) > rank:
                shutil.rmtree(later.path, ignore_errors=True)
    return checkpoint


def load_components(checkpoint: Checkpoint, components: dict[str, nn.Module]) -> list[str]:
    """Load the weights the checkpoint holds for ``components``; returns the names loaded."""
    loaded = []
    for name, module in components.items():
        path = checkpoint.path / f"{name}.safetensors"
        if path.is_file():
            state = load_file(str(path))
            module.load_state_dict(state)
            loaded.append(name)
    return loaded


def load_optimizer(checkpoint: Checkpoint, optimizer: torch.optim.Optimizer) -> None:
    state = json.loads((checkpoint.path / STATE_FILE).read_text())["optimizer"]
    tensors = load_file(str(checkpoint.path / OPTIMIZER_FILE))
    optimizer.load_state_dict(_join_optimizer_state(tensors, state))


def load_ema(checkpoint: Checkpoint, ema: EMA) -> None:
    """Restore the averages the checkpoint holds; components it lacks start from their weights."""
    updates = json.loads((checkpoint.path / STATE_FILE).read_text()).get("ema_updates", 0)
    for name in ema.shadow:
        path = checkpoint.path / f"{name}{EMA_SUFFIX}"
        if path.is_file():
            ema.load(name, load_file(str(path)), updates)


def _cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage; a copy per tensor avoids both.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def _split_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """torch optimizer state_dict -> (flat tensors, JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for param_id, param_state in state["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param_id}/{key}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], other: dict) -> dict:
    per_param: dict[int, dict] = {}
    for flat, value in tensors.items():
        param_id, key = flat.split("/", 1)
        per_param.setdefault(int(param_id), {})[key] = value
    for param_id, values in other["scalars"].items():
        per_param.setdefault(int(param_id), {}).update(values)
    # JSON turned tuples (Adam's betas) into lists; give them back their type.
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
              for g in other["param_groups"]]
    return {"state": per_param, "param_groups": groups}
