"""RetrieveExemplars on the DirectRunner: exemplars attached, drawn by seed, own frame never."""

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from amadapter.retrieval import ExemplarIndex, build_index, draw
from tests.layouts import cityscapes_frame
from tests.test_retrieval_index import POOL_LAYOUTS, read_train_ids, sources, write_pool
from tests.test_retrieval_score import CAR, street
from transforms.expand_samples import expand_targets
from storage.input_reads import read_label_record
from storage.records import LabelSource
from transforms.retrieve_exemplars import RetrieveExemplars


def targets_for(layouts, root, samples=3):
    """Target references (samples per label map) to label maps written under ``root``."""
    out = []
    for frame, boxes in layouts.items():
        cityscapes_frame(root, frame, train_ids=street(64, 128, boxes))
        path = f"{root}/gtFine/val/{frame.split('_')[0]}/{frame}_gtFine_labelTrainIds.png"
        source = LabelSource(frame, path, None, "train_ids", "cityscapes")
        out += expand_targets(source, samples, run_seed=7)
    return out


def train_ids(target):
    return read_label_record(target.label).train_ids


def tagged(targets):
    """(tag, target) pairs, as the augment job passes them (its tag is the shard)."""
    return [(i % 3, t) for i, t in enumerate(targets)]


def run(targets, index_path, top_k, batch_size):
    with TestPipeline(runner="DirectRunner") as p:
        result = (
            p
            | beam.Create(tagged(targets), reshuffle=False)
            | RetrieveExemplars(index_path, top_k=top_k, batch_size=batch_size)
        )
        tags = {t.key: tag for tag, t in tagged(targets)}
        retrieved = result.retrieved | "Rows" >> beam.MapTuple(
            lambda tag, r: (
                r.target.key, r.exemplars[0].source.key, round(r.exemplars[0].score, 6), tag == tags[r.target.key]
            )
        )
        failures = result.failures | "Codes" >> beam.MapTuple(
            lambda tag, f: (f.key, f.error_code, tag == tags[f.key])
        )
        yield retrieved, failures


@pytest.mark.parametrize("top_k, batch_size", [(1, 4), (3, 1), (3, 5)])
def test_targets_get_their_exemplars(tmp_path, top_k, batch_size):
    write_pool(tmp_path / "pool")
    index_path = str(tmp_path / "index")
    build_index(index_path, sources(tmp_path / "pool"), read_train_ids)
    # Two frames of the pool itself (seen from another root) and one new layout.
    layouts = {
        "aachen_000000_000001": POOL_LAYOUTS["aachen_000000_000001"],
        "bochum_000000_000001": POOL_LAYOUTS["bochum_000000_000001"],
        "zurich_000000_000001": [(CAR, 0.55, 0.85, 0.6, 0.95)],
    }
    targets = targets_for(layouts, tmp_path / "targets")

    index = ExemplarIndex.load(index_path)
    expected = []
    for t in targets:
        (ranked,) = index.query([train_ids(t)], k=top_k, target_paths=[t.source])
        chosen = draw(ranked, t.seed if top_k > 1 else None)
        assert t.label.key not in chosen.key  # never the target's own frame
        expected.append((t.key, chosen.key, round(chosen.score, 6), True))
    if top_k > 1:  # the seeded draw really draws: samples of one label map differ
        for frame in layouts:
            assert len({e[1] for e in expected if e[0].startswith(frame)}) > 1

    for retrieved, failures in run(targets, index_path, top_k, batch_size):
        assert_that(retrieved, equal_to(expected), label="retrieved")
        assert_that(failures, equal_to([]), label="no failures")


def test_exemplar_sources_can_be_read_back(tmp_path):
    write_pool(tmp_path / "pool")
    index_path = str(tmp_path / "index")
    build_index(index_path, sources(tmp_path / "pool"), read_train_ids)
    targets = targets_for({"ulm_000000_000001": [(CAR, 0.55, 0.85, 0.6, 0.95)]}, tmp_path, 1)
    with TestPipeline(runner="DirectRunner") as p:
        result = p | beam.Create(tagged(targets)) | RetrieveExemplars(index_path)
        shapes = result.retrieved | beam.MapTuple(
            lambda _, r: read_label_record(r.exemplars[0].source, photos="require").train_ids.shape
        )
        assert_that(shapes, equal_to([(64, 128)]))


def test_a_target_with_no_other_frame_fails_alone(tmp_path):
    only = {"ulm_000000_000001": [(CAR, 0.5, 0.9, 0.3, 0.7)]}
    write_pool(tmp_path / "pool", only)
    index_path = str(tmp_path / "index")
    build_index(index_path, sources(tmp_path / "pool"), read_train_ids)
    targets = targets_for({**only, "zurich_000000_000001": []}, tmp_path / "t", samples=1)
    for retrieved, failures in run(targets, index_path, top_k=1, batch_size=8):
        assert_that(
            retrieved | beam.Map(lambda row: row[0]),
            equal_to([t.key for t in targets if t.label.key.startswith("zurich")]),
            label="served",
        )
        assert_that(
            failures,
            equal_to(
                [(t.key, "empty_pool", True) for t in targets if t.label.key.startswith("ulm")]
            ),
            label="failed",
        )


def test_two_worker_processes_draw_the_same_exemplars(tmp_path):
    write_pool(tmp_path / "pool")
    index_path = str(tmp_path / "index")
    build_index(index_path, sources(tmp_path / "pool"), read_train_ids)
    layouts = {"zurich_000000_000001": [(CAR, 0.55, 0.85, 0.6, 0.95)], "aachen_000000_000001": []}
    targets = targets_for(layouts, tmp_path / "t", samples=4)
    index = ExemplarIndex.load(index_path)
    expected = []
    for t in targets:
        (ranked,) = index.query([train_ids(t)], k=3, target_paths=[t.source])
        expected.append((t.key, draw(ranked, t.seed).key))
    options = PipelineOptions(["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    with TestPipeline(runner="DirectRunner", options=options) as p:
        result = p | beam.Create(tagged(targets)) | RetrieveExemplars(
            index_path, top_k=3, batch_size=2
        )
        rows = result.retrieved | beam.MapTuple(lambda _, r: (r.target.key, r.exemplars[0].source.key))
        assert_that(rows, equal_to(expected))


def test_the_index_is_opened_once_per_worker_process(tmp_path, monkeypatch):
    """Several DoFn instances (threads of one worker process), many bundles: one load."""
    write_pool(tmp_path / "pool")
    index_path = str(tmp_path / "index")
    build_index(index_path, sources(tmp_path / "pool"), read_train_ids)
    targets = targets_for({"zurich_000000_000001": [], "ulm_000000_000001": []}, tmp_path, 4)
    loads = []
    real_load = ExemplarIndex.load.__func__
    monkeypatch.setattr(
        ExemplarIndex, "load", classmethod(lambda cls, p: loads.append(p) or real_load(cls, p))
    )
    options = PipelineOptions(["--direct_running_mode=multi_threading", "--direct_num_workers=2"])
    with TestPipeline(runner="DirectRunner", options=options) as p:
        result = (
            p
            | beam.Create(tagged(targets))
            | beam.Reshuffle()
            | RetrieveExemplars(index_path, batch_size=1)
        )
        assert_that(result.retrieved | beam.combiners.Count.Globally(), equal_to([len(targets)]))
    assert loads == [index_path]
