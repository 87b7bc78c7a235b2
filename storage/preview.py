"""The preview of an augment run: a contact sheet PNG and an HTML page of its first samples
(written by the job at its end, and by ``python -m jobs.preview``).

Each row shows one sample: the label map overlaid on the result | the exemplar
photo it borrowed its appearance from | the result. Samples are taken in shard
order, then in key order inside a shard, so the preview of a run is stable.
Writes ``OUTPUT/preview.png`` and ``OUTPUT/preview.html`` (self-contained, images
inline) through Beam's ``FileSystems``; ``OUTPUT`` may be a bucket.
"""

from __future__ import annotations

import base64
import html
import posixpath
import tarfile
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from apache_beam.io.filesystems import FileSystems

from amadapter.io.errors import InputError
from amadapter.io.labels import train_ids_to_colors
from amadapter.io.sample_format import decode_sample
from amadapter.io.resize import resize_photo
from amadapter.io.thumbnails import enlarge, png_bytes
from storage.fileio import list_files, open_file, write_atomically
from storage.input_reads import read_photo

PREVIEW_PNG = "preview.png"
PREVIEW_HTML = "preview.html"
OVERLAY_ALPHA = 0.55  # share of the label colour in the overlay tile
MIN_TILE_HEIGHT = 128  # small images are enlarged (nearest) to at least this height
GUTTER = 4
COLUMNS = ("label overlay", "exemplar", "result")


@dataclass(frozen=True)
class PreviewRow:
    key: str
    tiles: tuple[np.ndarray, np.ndarray, np.ndarray]  # (H, W, 3) uint8 each, in COLUMNS order
    meta: dict


def write_preview(output: str, count: int, prefix: str) -> tuple[str, str] | None:
    """Write the preview of the first ``count`` samples under ``output``; return the
    (png, html) paths, or None when the run wrote no sample."""
    rows = [
        _row(key, image, label, meta)
        for key, image, label, meta in first_samples(output, prefix, count)
    ]
    if not rows:
        return None
    png_path = FileSystems.join(output, PREVIEW_PNG)
    html_path = FileSystems.join(output, PREVIEW_HTML)
    write_atomically(png_path, png_bytes(contact_sheet(rows)), "image/png")
    write_atomically(html_path, _html(rows, output).encode(), "text/html")
    return png_path, html_path


def first_samples(
    output: str, prefix: str, count: int
) -> Iterator[tuple[str, np.ndarray, np.ndarray, dict]]:
    """(key, image, label, meta) of the first ``count`` samples of the finished shards."""
    pattern = FileSystems.join(output, f"{prefix}-*.tar")
    left = count
    for path in list_files(pattern):
        for sample in _tar_samples(path):
            if left <= 0:
                return
            yield decode_sample(sample)
            left -= 1


def contact_sheet(rows: list[PreviewRow]) -> np.ndarray:
    """One image: a row per sample, the tiles side by side, separated by white gutters."""
    lines = [np.concatenate(_with_gutters(list(row.tiles), axis=1), axis=1) for row in rows]
    width = max(line.shape[1] for line in lines)
    lines = [
        np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)), constant_values=255)
        for line in lines
    ]
    return np.concatenate(_with_gutters(lines, axis=0), axis=0)


def _row(key: str, image: np.ndarray, label: np.ndarray, meta: dict) -> PreviewRow:
    colours = train_ids_to_colors(label).astype(np.float32)
    overlay = (OVERLAY_ALPHA * colours + (1 - OVERLAY_ALPHA) * image).round().astype(np.uint8)
    exemplar = _exemplar_tile(meta.get("exemplar", {}).get("photo"), image.shape[:2])
    return PreviewRow(key, tuple(enlarge(t, MIN_TILE_HEIGHT) for t in (overlay, exemplar, image)), meta)


def _exemplar_tile(photo_path: str | None, size: tuple[int, int]) -> np.ndarray:
    """The exemplar photo resized to the sample's size; mid grey if it cannot be read."""
    if photo_path is None:
        return np.full((*size, 3), 128, np.uint8)
    try:
        photo = read_photo(photo_path)
    except InputError:
        return np.full((*size, 3), 128, np.uint8)
    return resize_photo(photo, size)


def _with_gutters(parts: list[np.ndarray], axis: int) -> list[np.ndarray]:
    out = []
    for part in parts:
        if out:
            shape = list(part.shape)
            shape[axis] = GUTTER
            out.append(np.full(shape, 255, np.uint8))
        out.append(part)
    return out


def _tar_samples(path: str) -> Iterator[dict]:
    """The samples of one shard as WebDataset-style dicts of raw member bytes, in tar order."""
    with open_file(path) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        current: dict = {}
        for member in tar:
            key, _, suffix = posixpath.basename(member.name).partition(".")
            if current and current["__key__"] != key:
                yield current
                current = {}
            current["__key__"] = key
            current[suffix] = tar.extractfile(member).read()
        if current:
            yield current


def _html(rows: list[PreviewRow], output: str) -> str:
    def cell(tile: np.ndarray) -> str:
        data = base64.b64encode(png_bytes(tile)).decode()
        return f'<td><img src="data:image/png;base64,{data}"></td>'

    def caption(row: PreviewRow) -> str:
        exemplar = row.meta.get("exemplar", {})
        parts = [
            f"<b>{html.escape(row.key)}</b>",
            f"label: {html.escape(str(row.meta.get('source', '')))}",
            f"exemplar: {html.escape(str(exemplar.get('key', '')))} ({_provenance(exemplar)})",
            f"seed {row.meta.get('seed')}, {row.meta.get('steps')} steps, "
            f"guidance {row.meta.get('guidance')}",
        ]
        return "<td>" + "<br>".join(parts) + "</td>"

    head = "".join(f"<th>{name}</th>" for name in COLUMNS + ("sample",))
    body = "\n".join(
        "<tr>" + "".join(cell(t) for t in row.tiles) + caption(row) + "</tr>" for row in rows
    )
    return (
        "<!doctype html><meta charset=utf-8>"
        f"<title>augment preview: {html.escape(output)}</title>"
        "<style>body{font-family:sans-serif}td{vertical-align:top;padding:4px}"
        "img{image-rendering:pixelated}</style>"
        f"<h1>{html.escape(output)}: first {len(rows)} samples</h1>"
        f"<table><tr>{head}</tr>\n{body}</table>\n"
    )


def _provenance(exemplar: dict) -> str:
    """How the exemplar was chosen: its retrieval score, or named by an ``--exemplar-map``
    line (whose exemplars have no score)."""
    score = exemplar.get("score")
    return "named in the exemplar map" if score is None else f"score {float(score):.3f}"
