"""jobs.preview on real shards: the contact sheet's layout and the HTML page."""

import numpy as np
from PIL import Image

from amadapter import world
from amadapter.io.labels import train_ids_to_colors
from jobs.preview import main
from storage.preview import COLUMNS, GUTTER, MIN_TILE_HEIGHT
from storage.records import Sample
from storage.shards import write_shard


def test_preview_rows_show_overlay_exemplar_and_result(tmp_path):
    photo, ids = world.scene(800_000, 800_000, 16, 32)
    exemplar = tmp_path / "exemplar.png"
    Image.fromarray(photo).save(exemplar)
    samples = []
    for i, photo_path in enumerate([str(exemplar), str(tmp_path / "gone.png"), str(exemplar)]):
        image = np.full((16, 32, 3), 40 * i, np.uint8)
        meta = {
            "source": f"labels/{i}.png",
            "exemplar": {"key": "ex", "photo": photo_path, "score": 0.5},
        }
        samples.append(Sample(f"sample-{i}", image, ids, meta))
    write_shard(str(tmp_path), "aug", 0, samples[:2])
    write_shard(str(tmp_path), "aug", 1, samples[2:])
    main([str(tmp_path), "--count", "2"])

    sheet = np.asarray(Image.open(tmp_path / "preview.png"))
    scale = MIN_TILE_HEIGHT // 16  # 16-pixel rows are enlarged 8x, nearest
    tile_h, tile_w = 16 * scale, 32 * scale
    assert sheet.shape == (2 * tile_h + GUTTER, 3 * tile_w + 2 * GUTTER, 3)
    first_exemplar = sheet[:tile_h, tile_w + GUTTER : 2 * tile_w + GUTTER]
    assert np.array_equal(first_exemplar[::scale, ::scale], photo)  # same size: no resampling
    overlay = sheet[:tile_h, :tile_w][::scale, ::scale].astype(int)
    assert np.abs(overlay - 0.55 * train_ids_to_colors(ids)).max() <= 1  # result is black
    missing_exemplar = sheet[tile_h + GUTTER :, tile_w + GUTTER : 2 * tile_w + GUTTER]
    assert (missing_exemplar == 128).all()
    page = (tmp_path / "preview.html").read_text()
    assert page.count("<img ") == 2 * len(COLUMNS) and "sample-1" in page and "sample-2" not in page
