"""``--exemplars-per-target``: a second exemplar lends the target classes the first lacks.

The greedy rule on hand-made matches, then a real DirectRunner job whose samples record
exactly the exemplars and lent classes the rule picks from the index."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from amadapter.io.labels import CLASS_NAMES, NUM_CLASSES
from amadapter.pipelines.model_factory import build_pipeline
from amadapter.retrieval import ExemplarIndex, ExemplarMatch
from amadapter.retrieval.coverage import class_pixels, cover_classes
from amadapter.world.export import export_world
from jobs.augment import run
from pipeline.exemplar_index import prepare_index
from storage.label_sources import list_label_sources
from storage.manifest import read_manifest
from storage.input_reads import read_label_record
from transforms.retrieve_exemplars import COVERAGE_CANDIDATES


def _match(key: str, classes) -> ExemplarMatch:
    return ExemplarMatch(key, f"{key}.png", f"{key}.jpg", "train_ids", "folder", 0.5, tuple(classes))


def _pixels(**counts) -> np.ndarray:
    pixels = np.zeros(NUM_CLASSES, np.int64)
    for train_id, n in counts.items():
        pixels[int(train_id[1:])] = n
    return pixels


def test_next_exemplar_covers_most_missing_pixels_ties_to_the_better_rank():
    first = _match("a", [0, 1])
    ranked = [first, _match("b", [0, 2]), _match("c", [3]), _match("d", [2]), _match("e", [2, 3])]
    target = _pixels(c0=50, c1=10, c2=30, c3=30, c4=5)
    chosen = cover_classes(first, ranked, target, 2)
    # e adds classes 2 and 3 (60 pixels); b, c, d add 30 each
    assert [(m.key, lent) for m, lent in chosen] == [("a", None), ("e", (2, 3))]
    three = cover_classes(first, ranked[:4], target, 3)
    assert [(m.key, lent) for m, lent in three] == [("a", None), ("b", (2,)), ("c", (3,))]


def test_coverage_stops_when_nothing_adds_a_target_pixel():
    first = _match("a", [0, 1])
    ranked = [first, _match("b", [0]), _match("c", [5])]  # class 5 is not in the target
    chosen = cover_classes(first, ranked, _pixels(c0=10, c1=10, c2=4), 3)
    assert [m.key for m, _ in chosen] == ["a"]
    assert cover_classes(first, ranked, _pixels(c0=1), 1) == [(first, None)]


def test_class_pixels_ignores_the_ignore_label():
    labels = np.array([[0, 0, 255], [18, 255, 0]], np.uint8)
    assert class_pixels(labels)[[0, 18]].tolist() == [3, 1] and class_pixels(labels).sum() == 4


@pytest.fixture(scope="module")
def covered_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    export_world(root, 6, "test", 16, 32)
    export_world(root, 24, "val", 16, 32)
    index = prepare_index(None, str(root), "cityscapes", "val", str(root))
    model = tmp_path_factory.mktemp("model")
    build_pipeline("tiny").save_pretrained(str(model))
    output = str(tmp_path_factory.mktemp("out"))
    argv = [
        "--runner=DirectRunner", "--labels", str(root), "--split", "test", "--index", index,
        "--exemplars-per-target", "2", "--model", str(model), "--steps", "2", "--size", "16x32",
        "--batch-size", "3", "--preview-count", "0", "--output", output,
    ]  # fmt: skip
    return {"root": root, "index": index, "summary": run(argv), "output": output, "argv": argv}


def test_job_records_the_exemplars_the_rule_picks(covered_run):
    summary = covered_run["summary"]
    assert summary.written == 6 and summary.failed == 0
    sources = list_label_sources(str(covered_run["root"]), "cityscapes", "test")
    maps = {s.label_path: read_label_record(s).train_ids for s in sources}
    index = ExemplarIndex.load(covered_run["index"])
    tars = sorted(str(p) for p in Path(covered_run["output"]).glob("aug-*.tar"))
    seconds = 0
    for sample in wds.WebDataset(tars, shardshuffle=False):
        meta = json.loads(sample["json"])
        labels = maps[meta["source"]]
        ranked = index.query([labels], COVERAGE_CANDIDATES, target_paths=[meta["source"]])[0]
        expected = cover_classes(ranked[0], ranked, class_pixels(labels), 2)
        recorded = [(e["key"], e["lends"]) for e in meta["exemplars"]]
        assert recorded == [
            (m.key, "rest" if lent is None else {"classes": [CLASS_NAMES[c] for c in lent]})
            for m, lent in expected
        ]
        assert meta["exemplar"] == meta["exemplars"][0]
        seconds += len(expected) == 2
    assert seconds >= 1, "no target needed a second exemplar: the test shows nothing"


def test_rerun_with_the_same_options_renders_nothing(covered_run):
    summary = run(covered_run["argv"])
    assert summary.model_calls == 0 and summary.written == 6
    rows = read_manifest(os.path.join(covered_run["output"], "manifest.parquet")).to_pylist()
    assert len(rows) == 6 and all(r["status"] == "written" for r in rows)
