"""Label maps -> shards -> manifest in one DirectRunner run, as the augment job chains them."""

import os

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from amadapter.data import shards
from amadapter.io.labels import train_ids_to_colors
from transforms.assemble_manifest import AssembleManifest
from transforms.assign_shards import AssignShards
from storage.manifest import read_manifest
from transforms.read_label_maps import ReadLabelMaps
from storage.records import LabelRecord, Sample
from tests.shard_writing import shard_stats, write_keyed_shards
from tests.conftest import CITYSCAPES_ROOT
from tests.layouts import cityscapes_frame


def colour_sample(record: LabelRecord) -> Sample:
    """A stand-in for synthesis that keeps the label map exact: its colour rendering."""
    return Sample(
        record.key,
        train_ids_to_colors(record.train_ids),
        record.train_ids,
        {"source": record.label_path},
    )


def test_every_input_ends_up_written_or_failed(tmp_path):
    root, output = tmp_path / "cityscapes", str(tmp_path / "out")
    rng = np.random.default_rng(0)
    for i in range(12):
        ids = rng.choice([7, 8, 11, 21, 23, 24, 26], size=(8, 16)).astype(np.uint8)  # label IDs
        cityscapes_frame(root, f"town_{i:06d}_000019", label_ids=ids, photo_size=(16, 8))
    cityscapes_frame(root, "town_000099_000019", label_ids=np.full((8, 16), 99, dtype=np.uint8))
    cityscapes_frame(
        root, "town_000098_000019", label_ids=np.zeros((8, 16), np.uint8), photo_size=(8, 8)
    )

    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as pipeline:
        read = pipeline | ReadLabelMaps(str(root), "cityscapes", split="val", photos="check")
        written = (
            (read.records | beam.Map(colour_sample), read.failures)
            | beam.Flatten()
            | AssignShards(5)
        )
        written = write_keyed_shards(written, output, "town")
        written | AssembleManifest(output, "town", os.path.join(output, "manifest.parquet"))

    manifest = read_manifest(os.path.join(output, "manifest.parquet")).to_pylist()
    assert len(manifest) == 14
    failed = {
        r["source"].rsplit("/", 1)[1]: r["error_code"] for r in manifest if r["status"] == "failed"
    }
    assert failed == {
        "town_000099_000019_gtFine_labelIds.png": "unknown_label_id",
        "town_000098_000019_gtFine_labelIds.png": "size_mismatch",
    }
    per_shard = [shard_stats(output, "town", i) for i in range(3)]
    assert [s["count"] + len(s["failed"]) for s in per_shard] == [5, 5, 4]  # inputs per shard
    assert sorted(r["shard"] for r in manifest if r["status"] == "written") == sorted(
        f"town-{i:06d}.tar" for i, s in enumerate(per_shard) for _ in range(s["count"])
    )
    read_back = list(shards(f"{output}/town-*.tar", with_key=True))
    assert sorted(k for k, _, _ in read_back) == sorted(
        r["key"] for r in manifest if r["status"] == "written"
    )
    assert all(np.array_equal(image, train_ids_to_colors(label)) for _, image, label in read_back)
