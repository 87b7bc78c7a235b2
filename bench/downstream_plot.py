"""The downstream benchmark's figures: mIoU per arm (mean and spread over seeds) and a
sheet of samples (target labels | synthetic image | filtered labels | ideal render)."""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from amadapter.io.labels import train_ids_to_colors  # noqa: E402


def plot_arms(scores: dict[str, list[float]], path: Path, quick: bool) -> None:
    """Bars: mean mIoU per arm; error bars: standard deviation over seeds; dots: seeds."""
    arms = list(scores)
    means = [statistics.mean(scores[a]) for a in arms]
    spreads = [statistics.stdev(scores[a]) if len(scores[a]) > 1 else 0.0 for a in arms]
    figure, axes = plt.subplots(figsize=(7, 3.6), dpi=120)
    axes.bar(range(len(arms)), means, yerr=spreads, capsize=4, color="#8fb3d9")
    for i, arm in enumerate(arms):
        axes.scatter([i] * len(scores[arm]), scores[arm], color="#1f3b5c", s=12, zorder=3)
    axes.set_xticks(range(len(arms)), [a.replace("_", "\n") for a in arms], fontsize=8)
    axes.set_ylabel("test mIoU")
    seeds = len(next(iter(scores.values())))
    axes.set_title(f"bench.downstream{' --quick' if quick else ''}: {seeds} seeds per arm")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def sample_sheet(synthetic: dict, filtered: dict, ideal: dict, path: Path, rows: int = 6) -> None:
    """The first ``rows`` samples by key (each dict: key -> (image, label, meta)): the
    synthetic sample's labels and image, the filtered run's labels for the same key
    (black: ignore; a grey cell: not written) and the ideal render."""
    lines = []
    for key in sorted(synthetic)[:rows]:
        image, label, _ = synthetic[key]
        missing = np.full_like(image, 128)
        cells = [
            train_ids_to_colors(label),
            image,
            train_ids_to_colors(filtered[key][1]) if key in filtered else missing,
            ideal[key][0],
        ]
        lines.append(np.concatenate([np.pad(c, ((1, 1), (1, 1), (0, 0)), constant_values=255)
                                     for c in cells], axis=1))  # fmt: skip
    sheet = np.concatenate(lines)
    Image.fromarray(sheet).resize((sheet.shape[1] * 2, sheet.shape[0] * 2), Image.NEAREST).save(path)
