"""Plot the training loss logs (``loss.jsonl`` of each run directory) into one PNG.

    python -m bench.loss_curves --runs /work/demo_runs/stage1 /work/demo_runs/stage2 \\
        --out bench/loss_curves.png

One panel per phase of each run, titled "phase (run directory name)": the
logged window means and a running median. The last printed line is a JSON
object with, per panel, the steps, the first and last logged loss, and the
seconds spent in training steps (checkpoint saves and restarts excluded).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from amadapter.training.loop import LossLog  # noqa: E402


def running_median(values: np.ndarray, window: int) -> np.ndarray:
    return np.array([np.median(values[max(0, i - window + 1): i + 1]) for i in range(len(values))])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="run directories holding loss.jsonl")
    parser.add_argument("--out", default="bench/loss_curves.png")
    args = parser.parse_args(argv)
    phases: dict[str, list[dict]] = {}
    for run in args.runs:
        for row in LossLog(run).rows():
            phases.setdefault(f"{row['phase']} ({Path(run).name})", []).append(row)
    fig, axes = plt.subplots(1, len(phases), figsize=(5 * len(phases), 3.6), squeeze=False)
    summary = {}
    for ax, (phase, rows) in zip(axes[0], phases.items()):
        steps = np.array([r["step"] for r in rows])
        losses = np.array([r["loss"] for r in rows])
        ax.plot(steps, losses, lw=0.6, alpha=0.5, label="logged mean")
        ax.plot(steps, running_median(losses, 10), lw=1.6, label="running median (10 logs)")
        ax.set_title(phase)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        summary[phase] = {
            "steps": int(steps[-1]),
            "first_loss": round(float(losses[0]), 5),
            "last_loss": round(float(losses[-1]), 5),
            "last_loss_median10": round(float(running_median(losses, 10)[-1]), 5),
            "train_wall_s": round(float(np.sum(np.array([r["s_per_step"] for r in rows]) * np.diff(steps, prepend=0))), 1),
        }
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
