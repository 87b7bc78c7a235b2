"""The augment job's process ends with its exit status every time (no abort at exit).

A daemon thread still in torch's C++ code when CPython finalizes is ended with
``pthread_exit`` and aborts the process ("terminate called without an active
exception", exit 134; pytorch/pytorch#38228); Beam's pool keeps the daemon threads that
ran the model. Measured here: a plain script with such a thread aborted 5 of 5 times.
``jobs.process_exit.exit_without_finalizing`` ends the process after the exit handlers
instead. Real subprocesses throughout: a torch daemon thread, then the job itself on a
tree with bad inputs, run several times in two runner modes."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from amadapter.pipelines.model_factory import build_pipeline
from amadapter.world.export import export_world
from tests.conftest import REPO

BUSY_TORCH_DAEMON = """
import atexit, sys, threading, time, torch
from jobs.process_exit import exit_without_finalizing

def spin():
    a = torch.randn(1000)
    while True:
        a + a

threading.Thread(target=spin, daemon=True).start()
time.sleep(0.2)
atexit.register(lambda: print("exit handler ran"))
print("work done")
exit_without_finalizing(int(sys.argv[1]))
"""


@pytest.mark.parametrize("status", [0, 0, 0, 1, 2])
def test_a_torch_daemon_thread_cannot_abort_the_exit(status):
    done = subprocess.run([sys.executable, "-c", BUSY_TORCH_DAEMON, str(status)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == status, done.stderr
    assert done.stdout.splitlines() == ["work done", "exit handler ran"]  # flushed, handlers run
    assert "terminate called" not in done.stderr


@pytest.fixture(scope="module")
def bad_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    export_world(root, 4, "test", 16, 32)
    export_world(root, 3, "val", 16, 32)
    labels = root / "gtFine" / "test" / "world"
    (labels / "notpng_000000_000001_gtFine_labelTrainIds.png").write_bytes(b"not a png")
    Image.fromarray(np.full((16, 32), 99, np.uint8)).save(labels / "unknown_000000_000002_gtFine_labelTrainIds.png")
    loop = labels / "loop_000000_000003_gtFine_labelTrainIds.png"
    loop.symlink_to(loop.name)
    model = tmp_path_factory.mktemp("model")
    build_pipeline("tiny").save_pretrained(str(model))
    return root, model


@pytest.mark.parametrize("mode, run", [("in_memory", 1), ("in_memory", 2), ("multi_threading", 1),
                                       ("multi_threading", 2)])  # fmt: skip
def test_the_job_exits_with_its_status_every_time(bad_tree, tmp_path, mode, run):
    root, model = bad_tree
    argv = [sys.executable, "-m", "jobs.augment", "--runner=DirectRunner", f"--direct_running_mode={mode}",
            "--direct_num_workers=2", "--labels", str(root), "--split", "test", "--exemplars-split", "val",
            "--model", str(model), "--steps", "1", "--size", "16x32", "--batch-size", "2",
            "--shard-size", "2", "--image-format", "png", "--output", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "terminate called" not in done.stderr
    assert "inputs 7 = written 4 + failed 3" in done.stdout  # the whole summary came out
