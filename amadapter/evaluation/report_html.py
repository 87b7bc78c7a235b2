"""The evaluation's static HTML report: one self-contained page (no scripts, images inline).

- the figures, each with what it was computed with (feature space, models);
- per-class bars as inline SVG: share of the target pixels, share of the predicted
  pixels and IoU of each class;
- the worst samples as thumbnails: output | target labels | the segmenter's prediction;
- the inputs that were skipped, with their named errors.
"""

from __future__ import annotations

import base64
import html
import numpy as np

from amadapter.evaluation.evaluation import WorstSample
from amadapter.io.labels import PALETTE, train_ids_to_colors
from amadapter.io.thumbnails import enlarge, png_bytes

MIN_THUMB_HEIGHT = 96  # small samples are enlarged (nearest) to at least this height
BAR_WIDTH = 240  # pixels of a full (1.0) bar
ROW_HEIGHT = 18
NAME_WIDTH = 110


def render_report(summary: dict, worst: list[WorstSample], title: str) -> str:
    """The page for ``summary`` (``Evaluation.summary()`` plus the job's fields) and the
    kept ``worst`` samples."""
    return (
        "<!doctype html><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px}td,th{vertical-align:top;"
        "padding:3px 8px;text-align:left}img{image-rendering:pixelated}"
        "small{color:#555}</style>"
        f"<h1>{html.escape(title)}</h1>"
        + _figures(summary)
        + "<h2>Per class</h2>"
        + _class_bars(summary["classes"])
        + _worst_samples(worst)
        + _skipped(summary.get("skipped", []))
    )


def _figures(summary: dict) -> str:
    rows = [("samples", f"{summary['samples']} at {_size(summary.get('size'))}")]
    fid, kid = summary.get("fid"), summary.get("kid")
    if fid is not None:
        rows.append(("FID", f"{fid['value']:.3f} <small>({html.escape(fid['feature_extractor'])}; "
                            f"{fid['generated_count']} generated vs {fid['real_count']} real)</small>"))
        rows.append(("KID", f"{kid['mean']:.5f} &plusmn; {kid['std']:.5f} <small>({kid['subsets']} "
                            f"subsets of {kid['subset_size']})</small>"))
    clip = summary.get("clip_i")
    if clip is not None and clip["mean"] is not None:
        rows.append(("CLIP-I", f"{clip['mean']:.4f} &plusmn; {clip['std']:.4f} <small>({clip['count']} "
                               f"samples, {html.escape(clip['model'])})</small>"))
    layout = summary.get("layout")
    if layout is not None and layout["miou"] is not None:
        rows.append(("layout mIoU", f"{layout['miou']:.4f} <small>({html.escape(layout['segmenter'])}, "
                                    f"{layout['segmenter_kind']})</small>"))
    body = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    return f"<table>{body}</table>"


def _class_bars(classes: list[dict]) -> str:
    """One SVG row per class: pixel share (class colour), predicted share (grey), IoU (black)."""
    with_iou = any("iou" in row for row in classes)
    columns = [("share of target pixels", "share")]
    if with_iou:
        columns += [("share of predicted pixels", "predicted_share"), ("IoU", "iou")]
    width = NAME_WIDTH + len(columns) * (BAR_WIDTH + 60)
    height = ROW_HEIGHT * (len(classes) + 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="12">']
    for j, (heading, _) in enumerate(columns):
        parts.append(f'<text x="{NAME_WIDTH + j * (BAR_WIDTH + 60)}" y="12">{heading}</text>')
    for i, row in enumerate(classes):
        y = ROW_HEIGHT * (i + 1)
        parts.append(f'<text x="0" y="{y + 12}">{html.escape(row["name"])}</text>')
        for j, (_, field) in enumerate(columns):
            value = row.get(field)
            x = NAME_WIDTH + j * (BAR_WIDTH + 60)
            colour = "#%02x%02x%02x" % tuple(PALETTE[row["id"]]) if j == 0 else ("#999" if j == 1 else "#222")
            length = 0.0 if value is None else BAR_WIDTH * value
            parts.append(f'<rect x="{x}" y="{y + 2}" width="{length:.1f}" height="{ROW_HEIGHT - 5}" '
                         f'fill="{colour}" stroke="#444" stroke-width="0.5"/>')
            text = "n/a" if value is None else f"{value:.3f}"
            parts.append(f'<text x="{x + length + 4:.1f}" y="{y + 12}">{text}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _worst_samples(worst: list[WorstSample]) -> str:
    if not worst:
        return ""
    by = "layout mIoU" if worst[0].score.miou is not None else "CLIP-I"
    rows = []
    for sample in worst:
        tiles = [sample.image, train_ids_to_colors(sample.label)]
        if sample.prediction is not None:
            tiles.append(train_ids_to_colors(sample.prediction))
        cells = "".join(f'<td><img src="{_png_data_uri(enlarge(t, MIN_THUMB_HEIGHT))}"></td>' for t in tiles)
        score = sample.score
        caption = f"<b>{html.escape(score.key)}</b><br>mIoU {_number(score.miou)}<br>CLIP-I {_number(score.clip_i)}"
        rows.append(f"<tr>{cells}<td>{caption}</td></tr>")
    head = "<th>output</th><th>target labels</th>" + (
        "<th>prediction</th>" if worst[0].prediction is not None else ""
    )
    return (f"<h2>Worst {len(worst)} samples by {by}</h2>"
            f"<table><tr>{head}<th>sample</th></tr>{''.join(rows)}</table>")


def _skipped(skipped: list[dict]) -> str:
    if not skipped:
        return ""
    items = "".join(
        f"<li><code>{html.escape(s['code'])}</code> {html.escape(s['path'])}: {html.escape(s['reason'])}</li>"
        for s in skipped
    )
    return f"<h2>Skipped inputs ({len(skipped)})</h2><ul>{items}</ul>"


def _png_data_uri(array: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(array)).decode()


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _size(size) -> str:
    return "?" if not size else f"{size[0]}x{size[1]}"
