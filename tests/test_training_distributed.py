"""Data-parallel training with real processes (torchrun, gloo on CPU) on the tiny preset:
two processes give the weights of one process with the same global batch, for stage 1
and stage 2; a run whose rank is killed resumes from its last checkpoint and ends
identical to an uninterrupted run; a checkpoint resumes with another process count."""

import json
import os
import shutil
import subprocess
import sys
import time

import psutil
import pytest
import torch
from safetensors.torch import load_file

from amadapter.training.checkpoints import latest_checkpoint
from amadapter.training.loop import LOG_FILE
from jobs import train_adapter as train_adapter_job
from jobs import train_structure as train_structure_job

from conftest import REPO

# SGD (with momentum): its steps are linear in the gradients, so runs that reduce the same
# gradients in another order differ by float rounding. AdamW's first steps are about
# lr * sign(gradient): a rounding difference in a near-zero gradient moved a weight by
# ~lr (1.06e-3 against 1.5e-4 on another machine). One thread per process everywhere.
LR = 0.1
COMMON = ["--model", "tiny", "--size", "32x64", "--batch-size", "4", "--log-every", "1", "--threads", "1",
          "--loader-workers", "0", "--optimizer", "sgd", "--lr", str(LR)]
# Each step's rounding difference is a few units in the last place (float32) of the weights,
# and they add up over the steps. Measured with weights up to 1.0: stage 2 (3 steps) 6e-8
# between 1 and 2 processes, 1.2e-4 when the global batch is halved (what a missing
# all-reduce gives); stage 1 (12 steps) 6.5e-7.
ULPS_PER_STEP = 16
STAGE1_SETTINGS = COMMON + ["--checkpoint-every", "4", "--uncond-prob", "0.5"]
STAGE1 = STAGE1_SETTINGS + ["--steps", "12"]
STAGE2 = COMMON + ["--steps", "3", "--checkpoint-every", "3"]


def _launch(job: str, args: list[str], processes: int = 2) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", job, *args]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _run(job: str, args: list[str], processes: int = 2) -> str:
    process = _launch(job, args, processes)
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out[-3000:]
    return out


def _weights(run_dir, phases) -> dict[str, torch.Tensor]:
    checkpoint = latest_checkpoint(run_dir, phases)
    return {f"{f.stem}.{k}": v for f in sorted(checkpoint.path.glob("*.safetensors")) if f.stem != "optimizer"
            for k, v in load_file(str(f)).items()}


def _assert_close(a: dict, b: dict, steps: int, exact: bool = False):
    """Equal weights, or (``exact=False``) equal up to ``ULPS_PER_STEP`` float32 units in
    the last place of the largest weight per training step."""
    assert a.keys() == b.keys() and len(a) > 10
    scale = max(b[k].abs().max().item() for k in b)
    tolerance = 0.0 if exact else ULPS_PER_STEP * steps * torch.finfo(torch.float32).eps * scale
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= tolerance, (worst, tolerance)


@pytest.fixture(scope="module")
def stage1_two_processes(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp1")
    out = _run("jobs.train_structure", STAGE1 + ["--run-dir", str(root / "run"), "--output", str(root / "model")])
    assert "global batch 4 = 2 processes x 1 micro-steps x 2 rows" in out
    return root


def test_stage1_two_processes_match_one_process_with_the_doubled_batch(stage1_two_processes, tmp_path):
    train_structure_job.main(STAGE1 + ["--run-dir", str(tmp_path / "run"), "--output", str(tmp_path / "model")])
    _assert_close(_weights(stage1_two_processes / "run", ("vae", "unet")), _weights(tmp_path / "run", ("vae", "unet")),
                  steps=12)


def test_stage2_two_processes_match_one_process_with_the_doubled_batch(tmp_path):
    out = _run("jobs.train_adapter", STAGE2 + ["--run-dir", str(tmp_path / "two"), "--output", str(tmp_path / "m2")])
    assert "global batch 4 = 2 processes x 1 micro-steps x 2 rows" in out
    train_adapter_job.main(STAGE2 + ["--run-dir", str(tmp_path / "one"), "--output", str(tmp_path / "m1")])
    _assert_close(_weights(tmp_path / "two", ("adapter",)), _weights(tmp_path / "one", ("adapter",)), steps=3)


def test_killed_rank_resumes_from_the_last_checkpoint_and_ends_identical(stage1_two_processes, tmp_path):
    args = STAGE1 + ["--run-dir", str(tmp_path / "run"), "--output", str(tmp_path / "model")]
    launcher = _launch("jobs.train_structure", args)
    first = tmp_path / "run" / "checkpoints" / "unet-0000004"
    deadline = time.monotonic() + 240
    while not first.is_dir() and launcher.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    workers = [(p, p.environ()) for p in psutil.Process(launcher.pid).children()]
    ranks = {int(env["RANK"]): p for p, env in workers if "RANK" in env}
    ranks[1].kill()
    launcher.communicate(timeout=120)
    assert launcher.returncode != 0
    interrupted_at = latest_checkpoint(tmp_path / "run", ("vae", "unet")).step
    assert 4 <= interrupted_at < 12, interrupted_at  # killed mid-run, after a checkpoint
    out = _run("jobs.train_structure", args)
    assert f"resuming at step {interrupted_at}" in out
    _assert_close(_weights(stage1_two_processes / "run", ("vae", "unet")), _weights(tmp_path / "run", ("vae", "unet")),
                  steps=12, exact=True)


def test_a_two_process_checkpoint_resumes_in_one_process(stage1_two_processes, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(stage1_two_processes / "run", run)
    middle = latest_checkpoint(run, ("vae", "unet")).path.parent / "unet-0000008"  # kept: steps 8 and 12
    train_structure_job.main(STAGE1 + ["--run-dir", str(run), "--output", str(tmp_path / "model"),
                                       "--resume-from", str(middle)])
    steps = [json.loads(line)["step"] for line in (run / LOG_FILE).read_text().splitlines()]
    assert steps == list(range(1, 13))  # the 2-process history up to 8, then this run's
    _assert_close(_weights(stage1_two_processes / "run", ("vae", "unet")), _weights(run, ("vae", "unet")), steps=4)  # steps 9-12 differ


def test_gradient_accumulation_matches_the_whole_batch(tmp_path):
    short = STAGE1_SETTINGS + ["--steps", "4"]
    train_structure_job.main(short + ["--run-dir", str(tmp_path / "whole"), "--output", str(tmp_path / "m1")])
    train_structure_job.main(short + ["--gradient-accumulation", "2", "--run-dir", str(tmp_path / "accumulated"),
                                      "--output", str(tmp_path / "m2")])
    _assert_close(_weights(tmp_path / "whole", ("vae", "unet")), _weights(tmp_path / "accumulated", ("vae", "unet")),
                  steps=4)
