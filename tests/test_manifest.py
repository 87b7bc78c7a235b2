import os

import pytest

from storage.manifest import MANIFEST_SCHEMA, read_manifest, write_manifest

WRITTEN = dict(
    key="b", source="/d/b.png", status="written", shard="x-000000.tar", error_code=None, error=None
)
FAILED = dict(
    key="a",
    source="/d/a.png",
    status="failed",
    shard=None,
    error_code="unknown_label_id",
    error="unknown_label_id: /d/a.png: label IDs [40] are not in the Cityscapes table",
)


def test_manifest_round_trips_sorted_by_key(tmp_path):
    path = str(tmp_path / "manifest.parquet")
    assert write_manifest(path, [WRITTEN, FAILED]) == 2
    table = read_manifest(path)
    assert table.schema.equals(MANIFEST_SCHEMA)
    assert table.to_pylist() == [FAILED, WRITTEN]
    assert os.listdir(tmp_path) == ["manifest.parquet"]  # the temporary name is gone


def test_manifest_refuses_rows_that_break_inputs_equal_written_plus_failed(tmp_path):
    path = str(tmp_path / "manifest.parquet")
    with pytest.raises(ValueError, match="'b' appears twice"):
        write_manifest(path, [WRITTEN, FAILED, WRITTEN])
    with pytest.raises(ValueError, match="status 'skipped'"):
        write_manifest(path, [dict(WRITTEN, status="skipped")])
    assert os.listdir(tmp_path) == []
    write_manifest(path, [])
    assert read_manifest(path).num_rows == 0
