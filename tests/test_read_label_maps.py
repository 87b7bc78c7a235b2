"""ReadLabelMaps on DirectRunner: each bad input is one named failure row; good ones get through."""

import numpy as np
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that

from amadapter.io import labels
from transforms.read_label_maps import ReadLabelMaps
from tests.conftest import BDD_ROOT, CITYSCAPES_ROOT
from tests.layouts import cityscapes_frame, png_bytes, save_image

ROAD_ID, CAR_ID = 7, 26  # Cityscapes label IDs; train IDs 0 and 13


def _by_frame(items, name_of):
    return {name_of(item).rsplit("/", 1)[-1].split("_gtFine")[0]: item for item in items}


def _check_cityscapes_records(records):
    got = _by_frame(records, lambda r: r.label_path)
    assert set(got) == {"good_000000_000001", "nophoto_000000_000001"}, sorted(got)
    good = got["good_000000_000001"].train_ids
    assert good.dtype == np.uint8 and good.shape == (4, 8)
    assert (good[:, :4] == 0).all() and (good[:, 4:] == 13).all()


def _check_cityscapes_failures(failures):
    got = {frame: f.error_code for frame, f in _by_frame(failures, lambda f: f.source).items()}
    assert got == {
        "truncated_000000_000001": "unreadable_image",
        "notpng_000000_000001": "unreadable_image",
        "unknown_000000_000001": "unknown_label_id",
        "rgb_000000_000001": "not_a_label_map",
        "mismatch_000000_000001": "size_mismatch",
        "loop_000000_000001": "unreadable_image",  # a symlink loop: cannot be stat'ed
        "dangling_000000_000001": "unreadable_image",  # a link to nothing
    }, got
    loop = next(f for f in failures if "loop_" in f.source)
    assert "Too many levels of symbolic links" in loop.message
    mismatch = next(f for f in failures if "mismatch" in f.source)
    assert "mismatch_000000_000001_leftImg8bit.png" in mismatch.message
    assert all(f.source in f.message for f in failures)


def test_read_label_maps_turns_each_bad_input_into_a_failure_row(tmp_path):
    city = tmp_path / "cityscapes"
    ids = np.full((4, 8), ROAD_ID, dtype=np.uint8)
    ids[:, 4:] = CAR_ID
    cityscapes_frame(city, "good_000000_000001", label_ids=ids, photo_size=(8, 4))
    cityscapes_frame(city, "nophoto_000000_000001", label_ids=ids)
    cityscapes_frame(city, "mismatch_000000_000001", label_ids=ids, photo_size=(16, 8))
    cityscapes_frame(city, "unknown_000000_000001", label_ids=np.full((4, 8), 40, dtype=np.uint8))
    cityscapes_frame(city, "rgb_000000_000001", label_ids=np.zeros((4, 8, 3), dtype=np.uint8))
    label_dir = city / "gtFine" / "val"
    whole = png_bytes(ids)
    (label_dir / "truncated" / "truncated_000000_000001_gtFine_labelIds.png").parent.mkdir()
    (label_dir / "truncated" / "truncated_000000_000001_gtFine_labelIds.png").write_bytes(
        whole[:40]
    )
    (label_dir / "notpng").mkdir()
    (label_dir / "notpng" / "notpng_000000_000001_gtFine_labelIds.png").write_bytes(b"GIF89a...")
    (label_dir / "links").mkdir()
    loop = label_dir / "links" / "loop_000000_000001_gtFine_labelIds.png"
    loop.symlink_to(loop.name)
    (label_dir / "links" / "dangling_000000_000001_gtFine_labelIds.png").symlink_to(tmp_path / "gone.png")

    colours = tmp_path / "colours"
    save_image(colours / "ok.png", labels.train_ids_to_colors(np.array([[0, 18]], dtype=np.uint8)))
    save_image(colours / "odd.png", np.full((1, 2, 3), (1, 2, 3), dtype=np.uint8))
    (tmp_path / "empty").mkdir()

    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as pipeline:
        city_read = pipeline | "City" >> ReadLabelMaps(
            str(city), "cityscapes", split="val", photos="check"
        )
        assert_that(city_read.records, _check_cityscapes_records, label="CityRecords")
        assert_that(city_read.failures, _check_cityscapes_failures, label="CityFailures")

        required = pipeline | "Required" >> ReadLabelMaps(
            str(city), "cityscapes", "val", photos="require"
        )
        assert_that(
            required.failures | beam.Map(lambda f: (f.source.rsplit("/", 1)[1], f.error_code)),
            lambda rows: _assert_in(
                ("nophoto_000000_000001_gtFine_labelIds.png", "missing_photo"), rows
            ),
            label="MissingPhoto",
        )

        folder = pipeline | "Folder" >> ReadLabelMaps(str(colours), "folder", label_format="color")
        assert_that(
            folder.records | beam.Map(lambda r: r.train_ids.tolist()),
            lambda got: _assert_equal(got, [[[0, 18]]]),
            label="ColourRecords",
        )
        assert_that(
            folder.failures | beam.Map(lambda f: (f.source.rsplit("/", 1)[1], f.error_code)),
            lambda got: _assert_equal(got, [("odd.png", "unknown_color")]),
            label="ColourFailures",
        )

        empty = pipeline | "Empty" >> ReadLabelMaps(str(tmp_path / "empty"), "bdd100k", "val")
        assert_that(empty.records, lambda got: _assert_equal(got, []), label="NoRecords")
        assert_that(
            empty.failures | beam.Map(lambda f: (f.source, f.error_code)),
            lambda got: _assert_equal(got, [(str(tmp_path / "empty"), "empty_root")]),
            label="EmptyRoot",
        )

        real = (
            (
                pipeline
                | "RealCity"
                >> ReadLabelMaps(str(CITYSCAPES_ROOT), "cityscapes", "val", photos="require")
            ).records,
            (pipeline | "RealBdd" >> ReadLabelMaps(str(BDD_ROOT), "bdd100k", "val")).records,
        ) | beam.Flatten()
        assert_that(
            real
            | beam.Map(
                lambda r: (r.dataset, r.train_ids.shape, sorted(np.unique(r.train_ids).tolist()))
            ),
            lambda got: _assert_equal(
                sorted(got),
                [
                    ("bdd100k", (720, 1280), [0, 1, 2, 5, 6, 7, 8, 9, 10, 13, 14]),
                    ("cityscapes", (128, 256), [0, 1, 2, 4, 5, 7, 8, 10, 11, 13, 255]),
                ],
            ),
            label="RealRecords",
        )


def _assert_equal(got, expected):
    assert list(got) == expected, got


def _assert_in(item, rows):
    assert item in list(rows), rows
