"""The quality filter in the augment job: real DirectRunner runs with a tiny checkpoint and a
random SmallSegmenter as the filter, real PNGs, tars read back with webdataset, manifests.

Run A keeps every sample (--filter-min-kept 0) so each one's kept share is known; run B
sets --filter-min-kept to the median of those shares, so some samples fall under it and
the rest are written with exactly run A's bytes. Then resume and fingerprint rules."""

import json
import shutil
import tarfile
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from amadapter.data import shards
from amadapter.filtering import load_segmentation_model
from amadapter.io.labels import IGNORE_ID
from amadapter.io.sample_format import decode_sample
from amadapter.io.resize import resize_labels_nearest
from amadapter.pipelines.model_factory import build_pipeline
from amadapter.world.export import export_world
from jobs.augment import EXIT_BAD_LAUNCH, main, run
from pipeline.augment_graph import build_augment, resolve_inputs
from pipeline.exemplar_index import prepare_index
from pipeline.filter_reference import evenly_spaced, reference_sources
from pipeline.launch_checks import LaunchError
from pipeline.options import parse_augment_options
from tests.test_quality_filter import save_small_segmenter
from storage.fingerprint import FingerprintMismatchError, checkpoint_sha256
from storage.label_sources import list_label_sources
from storage.manifest import read_manifest
from storage.input_reads import read_label_record

TARGETS, POOL, MARGIN = 8, 6, 1.25


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("filter")
    export_world(base / "labels", TARGETS, "test", 16, 32)
    export_world(base / "pool", POOL, "val", 16, 32)
    build_pipeline("tiny").save_pretrained(str(base / "model"))
    save_small_segmenter(base / "segmenter", seed=3)
    argv = [
        "--runner=DirectRunner", "--labels", str(base / "labels"), "--split", "test",
        "--exemplars", str(base / "pool"), "--exemplars-split", "val",
        "--model", str(base / "model"), "--steps", "1", "--size", "16x32",
        "--shard-size", "4", "--batch-size", "4", "--image-format", "png",
        "--preview-count", "0", "--filter-segmenter", str(base / "segmenter"),
        "--filter-margin", str(MARGIN),
    ]  # fmt: skip
    keep_all = run(argv + ["--output", str(base / "a"), "--filter-min-kept", "0"])
    return {"argv": argv, "base": base, "a": base / "a", "keep_all": keep_all}


def samples(output: Path) -> dict[str, tuple]:
    """key -> (image, label, meta) of every written sample."""
    out = {}
    for path in sorted(output.glob("aug-*.tar")):
        with tarfile.open(path) as tar:
            raw = {}
            for member in tar.getmembers():
                key, suffix = member.name.split(".", 1)
                raw.setdefault(key, {"__key__": key})[suffix] = tar.extractfile(member).read()
        for key, sample in raw.items():
            out[key] = decode_sample(sample)[1:]
    return out


def members(output: Path) -> dict[str, bytes]:
    found = {}
    for path in sorted(output.glob("aug-*.tar")):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                found[member.name] = tar.extractfile(member).read()
    return found


def test_written_labels_are_the_targets_with_implausible_pixels_ignored(setup):
    output, summary = setup["a"], setup["keep_all"]
    assert (summary.inputs, summary.written, summary.failed, summary.filtered) == (TARGETS,) * 2 + (0, 0)
    recorded = json.loads((output / "_filter" / "reference_losses.json").read_text())
    assert recorded["reference_losses"]["images"] == POOL and recorded["size"] == [16, 32]
    reference = [recorded["reference_losses"]["classes"][c]["loss"]
                 for c in recorded["reference_losses"]["classes"]]  # fmt: skip
    model = load_segmentation_model(str(setup["base"] / "segmenter"))
    sha = checkpoint_sha256(str(setup["base"] / "segmenter"))
    sources = {s.key: s for s in list_label_sources(str(setup["base"] / "labels"), "cityscapes", "test")}
    dropped_total = 0
    for key, (image, label, meta) in samples(output).items():
        ids = read_label_record(sources[key[: -len("-s0")]]).train_ids
        target = resize_labels_nearest(torch.from_numpy(ids)[None], (16, 32))[0].numpy()
        # the rule, computed here from the written image and the recorded reference
        loss = F.cross_entropy(model.logits(image[None]), torch.from_numpy(target).long()[None],
                               ignore_index=255, reduction="none")[0].numpy()  # fmt: skip
        limit = np.array([np.inf if r is None else MARGIN * r for r in reference] + [np.inf])
        drop = loss > limit[np.where(target == IGNORE_ID, len(reference), target)]
        assert np.array_equal(label, np.where(drop, IGNORE_ID, target))
        record = meta["quality_filter"]
        labelled = (target != IGNORE_ID).sum()
        assert record["kept_share"] == pytest.approx((labelled - drop.sum()) / labelled, abs=1e-6)
        assert record["dropped_pixels"] == drop.sum() and record["model_sha256"] == sha
        dropped_total += int(drop.sum())
    assert 0 < dropped_total < TARGETS * 16 * 32  # the rule both drops and keeps pixels here
    stats = [json.loads(p.read_text()) for p in sorted(output.glob("aug-*.stats.json"))]
    assert sum(s["filtered_pixels"] for s in stats) == dropped_total == summary.filtered_pixels
    assert all(s["fingerprint"]["quality_filter"]["reference_losses"] == reference for s in stats)


@pytest.fixture(scope="module")
def strict(setup):
    """Run B: --filter-min-kept at the median kept share of run A."""
    shares = {k: m["quality_filter"]["kept_share"] for k, (_, _, m) in samples(setup["a"]).items()}
    threshold = sorted(shares.values())[len(shares) // 2]
    output = setup["base"] / "b"
    summary = run(setup["argv"] + ["--output", str(output), "--filter-min-kept", str(threshold)])
    return {"output": output, "summary": summary, "shares": shares, "threshold": threshold}


def test_samples_under_min_kept_get_a_filtered_row_and_the_rest_are_unchanged(setup, strict):
    output, summary, shares = strict["output"], strict["summary"], strict["shares"]
    under = {k for k, share in shares.items() if share < strict["threshold"]}
    assert under and len(under) < TARGETS
    assert (summary.inputs, summary.written, summary.filtered, summary.failed) == (
        TARGETS, TARGETS - len(under), len(under), 0
    )  # fmt: skip
    assert "+ filtered %d" % len(under) in summary.lines()[0]
    rows = {r["key"]: r for r in read_manifest(str(output / "manifest.parquet")).to_pylist()}
    assert {k for k, r in rows.items() if r["status"] == "filtered"} == under
    for key in under:
        assert rows[key]["error_code"] == "filtered" and rows[key]["shard"] is None
        assert f"kept {shares[key]:.1%}" in rows[key]["error"]
    kept = {n: data for n, data in members(setup["a"]).items() if n.split(".")[0] not in under}
    written = members(output)
    assert written.keys() == kept.keys()
    for name, data in written.items():  # run A's bytes exactly, but for the recorded min-kept
        if name.endswith(".json"):
            meta, before = json.loads(data), json.loads(kept[name])
            assert meta["quality_filter"].pop("min_kept") == strict["threshold"]
            before["quality_filter"].pop("min_kept")
            assert meta == before
        else:
            assert data == kept[name]
    stats = [json.loads(p.read_text()) for p in sorted(output.glob("aug-*.stats.json"))]
    assert {row["key"] for s in stats for row in s["filtered"]} == under
    read_back = [key for key, _, _ in shards(sorted(str(p) for p in output.glob("*.tar")), with_key=True)]
    assert sorted(read_back) == sorted(set(shares) - under)


def test_a_rerun_reuses_the_shards_and_a_filter_change_is_a_fingerprint_change(setup, strict, tmp_path):
    output = tmp_path / "b"
    shutil.copytree(strict["output"], output)
    before = members(output)
    argv = setup["argv"] + ["--output", str(output)]
    rerun = run(argv + ["--filter-min-kept", str(strict["threshold"])])
    assert (rerun.model_calls, rerun.skipped_shards, rerun.filtered) == (0, 2, strict["summary"].filtered)
    assert members(output) == before
    with pytest.raises(FingerprintMismatchError) as margin:
        run(argv + ["--filter-min-kept", str(strict["threshold"]), "--filter-margin", "2"])
    assert set(margin.value.differences) == {"quality_filter"}
    without = [a for a in argv if a not in ("--filter-segmenter", str(setup["base"] / "segmenter"))]
    with pytest.raises(FingerprintMismatchError) as off:
        run(without)
    assert set(off.value.differences) == {"quality_filter"}
    assert members(output) == before



def test_a_directory_without_a_segmenter_or_a_map_without_a_reference_stops_the_launch(setup, tmp_path):
    empty = tmp_path / "not-a-segmenter"
    empty.mkdir()
    (empty / "notes.txt").write_text("weights elsewhere")
    argv = [a if a != str(setup["base"] / "segmenter") else str(empty) for a in setup["argv"]]
    assert main(argv + ["--output", str(tmp_path / "out")]) == EXIT_BAD_LAUNCH
    with pytest.raises(LaunchError, match="not a segmentation model"):
        build_augment(beam.Pipeline(), parse_augment_options(argv + ["--output", str(tmp_path / "o")]))
    exemplar_map = tmp_path / "map.jsonl"
    exemplar_map.write_text('{"label": "t_gtFine_labelIds.png", "regions": []}\n')  # a line: not empty
    mapped = ["--runner=DirectRunner", "--exemplar-map", str(exemplar_map), "--model",
              str(setup["base"] / "model"), "--filter-segmenter", str(setup["base"] / "segmenter"),
              "--output", str(tmp_path / "mapped")]  # fmt: skip
    with pytest.raises(LaunchError, match="needs --filter-reference"):
        build_augment(beam.Pipeline(), parse_augment_options(mapped))


def test_an_index_serves_the_same_reference_frames_as_its_pool_root(setup, tmp_path):
    pool = str(setup["base"] / "pool")
    index = prepare_index(None, pool, "cityscapes", "val", str(tmp_path))
    by_root = parse_augment_options(setup["argv"] + ["--output", str(tmp_path)])
    by_index = parse_augment_options(
        [a for a in setup["argv"] if a not in ("--exemplars", pool)] + ["--index", index]
    )
    root_frames, root_name = reference_sources(by_root, resolve_inputs(by_root))
    index_frames, index_name = reference_sources(by_index, resolve_inputs(by_index))
    assert [s.photo_path for s in index_frames] == [s.photo_path for s in root_frames]
    assert len(root_frames) == POOL and "index" in index_name and "index" not in root_name
    assert evenly_spaced(list(range(10)), 4) == [0, 3, 6, 9]
