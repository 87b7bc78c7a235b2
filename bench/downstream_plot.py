"""The downstream benchmark's figures: test mIoU per arm for each real-set size (mean, std
and the seeds) and a sheet of samples (labels | exemplar | job | ideal | FDA)."""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from amadapter.io.labels import train_ids_to_colors  # noqa: E402


def plot_arms(scores: dict[int, dict[str, list[float]]], path: Path, quick: bool) -> None:
    """One panel per real-set size R: bars, the mean test mIoU per arm; error bars, the
    standard deviation over seeds; dots, the seeds; the dashed line, the ``real`` arm."""
    figure, panels = plt.subplots(1, len(scores), figsize=(7 * len(scores), 4), dpi=110, squeeze=False)
    for axes, (count, arms) in zip(panels[0], scores.items()):
        names = list(arms)
        means = [statistics.mean(arms[a]) for a in names]
        spreads = [statistics.stdev(arms[a]) if len(arms[a]) > 1 else 0.0 for a in names]
        axes.bar(range(len(names)), means, yerr=spreads, capsize=3, color="#8fb3d9")
        for i, arm in enumerate(names):
            axes.scatter([i] * len(arms[arm]), arms[arm], color="#1f3b5c", s=10, zorder=3)
        axes.axhline(means[0], color="#444", linestyle="--", linewidth=0.8)
        axes.set_xticks(range(len(names)), [a.replace("real_", "").replace("_", "\n") for a in names], fontsize=7)
        axes.set_ylabel("test mIoU (night)")
        seeds = len(next(iter(arms.values())))
        axes.set_title(f"R = {count} day photos{' (--quick)' if quick else ''}, {seeds} seeds")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def sample_sheet(rows: list[tuple[np.ndarray, ...]], path: Path) -> None:
    """Each row (labels, exemplar, job image, ideal image, FDA image) as one line of cells."""
    lines = []
    for label, *images in rows:
        cells = [train_ids_to_colors(label), *images]
        lines.append(np.concatenate([np.pad(c, ((1, 1), (1, 1), (0, 0)), constant_values=255)
                                     for c in cells], axis=1))  # fmt: skip
    sheet = np.concatenate(lines)
    Image.fromarray(sheet).resize((sheet.shape[1] * 2, sheet.shape[0] * 2), Image.NEAREST).save(path)
