"""Exemplar index: build from real files, query, self-exclusion, bad entries, update, draw."""

import json

import numpy as np
import pytest

from amadapter import world
from amadapter.io.errors import EmptyPoolError
from amadapter.retrieval import ExemplarIndex, build_index, draw, layout_scores_against_pool
from amadapter.retrieval.descriptor import downsample_nearest
from amadapter.retrieval.store import META_FILE, IndexFormatError
from tests.conftest import CITYSCAPES_ROOT
from tests.layouts import cityscapes_frame, save_image
from tests.test_retrieval_score import CAR, PERSON, POLE, street
from storage.label_sources import list_label_sources
from storage.input_reads import read_label_record
from storage.records import LabelSource

POOL_LAYOUTS = {
    "aachen_000000_000001": [(CAR, 0.55, 0.85, 0.05, 0.35)],  # car left
    "aachen_000000_000002": [(CAR, 0.55, 0.85, 0.65, 0.95)],  # car right
    "aachen_000000_000003": [],  # empty street
    "aachen_000000_000004": [(PERSON, 0.3, 0.8, 0.8, 0.85), (POLE, 0.1, 0.7, 0.1, 0.12)],
    "bochum_000000_000001": [(CAR, 0.5, 0.9, 0.3, 0.7)],  # car in the middle
}


def write_pool(root, layouts=POOL_LAYOUTS, split="train"):
    for frame, boxes in layouts.items():
        m = street(64, 128, boxes)
        cityscapes_frame(root, frame, train_ids=m, photo_size=(128, 64), split=split)


def read_train_ids(source):
    return read_label_record(source, photos="require").train_ids


def sources(root, split="train"):
    return list_label_sources(str(root), "cityscapes", split)


@pytest.fixture
def pool_index(tmp_path):
    write_pool(tmp_path / "pool")
    report = build_index(str(tmp_path / "index"), sources(tmp_path / "pool"), read_train_ids)
    assert (report.added, report.total, report.skipped) == (5, 5, [])
    return ExemplarIndex.load(str(tmp_path / "index"))


def test_hand_made_layouts_rank_as_expected(pool_index):
    target = street(128, 256, [(CAR, 0.55, 0.85, 0.04, 0.34)])  # car left, another size
    (ranked,) = pool_index.query([target], k=5, target_paths=[None])
    frames = [m.key.split("-")[0] for m in ranked]
    assert frames[0] == "aachen_000000_000001"
    # A car on the other side beats no car (coverage); people and poles come last.
    assert frames[1:] == [
        "bochum_000000_000001",
        "aachen_000000_000002",
        "aachen_000000_000003",
        "aachen_000000_000004",
    ]
    assert [m.score for m in ranked] == sorted((m.score for m in ranked), reverse=True)
    assert ranked[0].photo_path.endswith("aachen_000000_000001_leftImg8bit.png")
    assert ranked[0].label_format == "train_ids" and ranked[0].dataset == "cityscapes"


def test_own_frame_is_excluded_also_under_another_root_and_file(pool_index, tmp_path):
    own = street(64, 128, POOL_LAYOUTS["aachen_000000_000002"])
    # The same frame as a target elsewhere: another root, split and label file kind.
    path = str(tmp_path / "t/gtFine/val/aachen/aachen_000000_000002_gtFine_labelIds.png")
    (ranked,) = pool_index.query([own], k=5, target_paths=[path])
    assert len(ranked) == 4 and all("aachen_000000_000002" not in m.key for m in ranked)
    (ranked,) = pool_index.query([own], k=1, target_paths=[path], exclude_self=False)
    assert "aachen_000000_000002" in ranked[0].key and ranked[0].score == pytest.approx(1.0)


def test_a_pool_of_only_the_target_returns_nothing(tmp_path):
    write_pool(tmp_path / "pool", {"ulm_000000_000001": [(CAR, 0.5, 0.9, 0.3, 0.7)]})
    build_index(str(tmp_path / "index"), sources(tmp_path / "pool"), read_train_ids)
    index = ExemplarIndex.load(str(tmp_path / "index"))
    m = street(64, 128, [(CAR, 0.5, 0.9, 0.3, 0.7)])
    assert index.query([m], k=3, target_paths=["x/ulm_000000_000001_gtFine_labelIds.png"]) == [[]]


def test_round_trip_every_entry_finds_itself(pool_index, tmp_path):
    for src in sources(tmp_path / "pool"):
        (ranked,) = pool_index.query(
            [read_train_ids(src)], k=1, target_paths=[src.label_path], exclude_self=False
        )
        assert (ranked[0].key, ranked[0].label_path, ranked[0].photo_path) == (
            src.key,
            src.label_path,
            src.photo_path,
        )
        assert ranked[0].score == pytest.approx(1.0)


def test_bad_entries_are_skipped_and_listed(tmp_path):
    root = tmp_path / "pool"
    write_pool(root)
    write_pool(root, {"aachen_000000_000009": [], "jena_000000_000001": []})
    corrupt = root / "gtFine/train/aachen/aachen_000000_000009_gtFine_labelTrainIds.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")  # PNG signature, broken body
    bad_photo = root / "leftImg8bit/train/jena/jena_000000_000001_leftImg8bit.png"
    bad_photo.write_bytes(b"not an image")
    save_image(root / "gtFine/train/ulm/ulm_000000_000001_gtFine_labelTrainIds.png", street())
    seen = []
    report = build_index(
        str(tmp_path / "index"),
        sources(root),
        read_train_ids,
        on_skip=lambda source, error: seen.append(source.key),
    )
    skipped = {key.split("-")[0]: error for key, error in report.skipped}
    assert set(skipped) == {"aachen_000000_000009", "jena_000000_000001", "ulm_000000_000001"}
    assert skipped["aachen_000000_000009"].code == "unreadable_image"
    assert str(corrupt) in str(skipped["aachen_000000_000009"])
    assert skipped["jena_000000_000001"].code == "unreadable_image"
    assert str(bad_photo) in str(skipped["jena_000000_000001"])
    assert skipped["ulm_000000_000001"].code == "missing_photo"
    assert sorted(seen) == sorted(key for key, _ in report.skipped)
    assert report.added == report.total == 5
    assert len(ExemplarIndex.load(str(tmp_path / "index"))) == 5


def test_empty_pool_is_a_clear_error(tmp_path):
    root = tmp_path / "pool"
    save_image(root / "gtFine/train/ulm/ulm_000000_000001_gtFine_labelTrainIds.png", street())
    with pytest.raises(EmptyPoolError, match="no usable pool entry"):
        build_index(str(tmp_path / "index"), sources(root), read_train_ids)
    assert not (tmp_path / "index" / META_FILE).exists()
    with pytest.raises(EmptyPoolError):
        build_index(str(tmp_path / "index"), [], read_train_ids)
    with pytest.raises(IndexFormatError, match="no exemplar index"):
        ExemplarIndex.load(str(tmp_path / "index"))


def test_update_reads_only_new_entries_and_leaves_old_parts(tmp_path):
    root, index_path = tmp_path / "pool", str(tmp_path / "index")
    first = dict(list(POOL_LAYOUTS.items())[:3])
    write_pool(root, first)
    build_index(index_path, sources(root), read_train_ids)
    (old_part,) = json.loads((tmp_path / "index" / META_FILE).read_text())["parts"]
    old_bytes = (tmp_path / "index" / old_part["file"]).read_bytes()

    write_pool(root)  # adds the two other frames (rewriting the first three identically)
    reads = []
    counting = lambda source: reads.append(source.key) or read_train_ids(source)  # noqa: E731
    report = build_index(index_path, sources(root), counting)
    assert (report.added, report.already_indexed, report.total) == (2, 3, 5)
    new_frames = sorted(k.split("-")[0] for k in reads)
    assert new_frames == ["aachen_000000_000004", "bochum_000000_000001"]
    assert (tmp_path / "index" / old_part["file"]).read_bytes() == old_bytes
    index = ExemplarIndex.load(index_path)
    bochum = street(64, 128, POOL_LAYOUTS["bochum_000000_000001"])
    (ranked,) = index.query([bochum], k=1, target_paths=[None])
    assert ranked[0].key.startswith("bochum_000000_000001")

    report = build_index(index_path, sources(root), read_train_ids, rebuild=True)
    assert (report.added, report.total) == (5, 5)
    parts = json.loads((tmp_path / "index" / META_FILE).read_text())["parts"]
    assert len(parts) == 1 and not (tmp_path / "index" / old_part["file"]).exists()
    assert len(ExemplarIndex.load(index_path)) == 5


def test_an_index_of_another_format_version_is_refused(pool_index, tmp_path):
    meta_path = tmp_path / "index" / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["version"] += 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(IndexFormatError, match="rebuild"):
        ExemplarIndex.load(str(tmp_path / "index"))


def test_seeded_draw_is_deterministic(pool_index):
    target = street(64, 128, [(CAR, 0.6, 0.85, 0.08, 0.32)])
    (ranked,) = pool_index.query([target], k=3, target_paths=[None])
    assert draw(ranked, None) == ranked[0]
    picks = [draw(ranked, seed).key for seed in range(40)]
    assert picks == [draw(ranked, seed).key for seed in range(40)]
    assert set(picks) == {m.key for m in ranked}  # every one of the top 3 gets drawn
    (again,) = pool_index.query([target], k=3, target_paths=[None])
    assert [draw(again, seed).key for seed in range(40)] == picks


def world_sources(seeds):
    return [
        LabelSource(f"w{s}", f"world/world_{s:06d}_{s:06d}_gtFine_labelTrainIds.png",
                    f"world/world_{s:06d}_{s:06d}_leftImg8bit.png", "train_ids", "world")
        for s in seeds
    ]  # fmt: skip


def read_world(source):
    return world.layout(int(source.key[1:]), 64, 128)


def test_two_stage_search_matches_brute_force(tmp_path):
    pool = world_sources(range(600))
    build_index(str(tmp_path / "index"), pool, read_world, workers=2)
    index = ExemplarIndex.load(str(tmp_path / "index"))
    targets = [world.layout(s, 64, 128) for s in range(900_000, 900_040)]
    small_pool = np.stack([downsample_nearest(read_world(s)) for s in pool])
    small_targets = np.stack([downsample_nearest(t) for t in targets])
    reference = layout_scores_against_pool(small_targets, small_pool)
    row_of = {s.key: i for i, s in enumerate(pool)}

    everything = index.query(targets, k=3, target_paths=[None] * 40, candidates=len(pool))
    fast = index.query(targets, k=3, target_paths=[None] * 40, candidates=64)
    for b, (full, quick) in enumerate(zip(everything, fast)):
        assert full[0].score == pytest.approx(reference[b].max(), rel=1e-6)
        for m in full + quick:  # returned scores are the exact ones
            assert m.score == pytest.approx(reference[b, row_of[m.key]], rel=1e-6)
    agreement = np.mean([q[0].score >= 0.99 * f[0].score for f, q in zip(everything, fast)])
    assert agreement >= 0.95

    alone = [index.query([t], k=3, target_paths=[None])[0] for t in targets[:5]]
    assert alone == index.query(targets[:5], k=3, target_paths=[None] * 5)

    # Pool entries as targets, through the scan (64 of 600 candidates): never themselves.
    own = [read_world(s) for s in pool[:20]]
    paths = [s.label_path for s in pool[:20]]
    for source, ranked in zip(pool, index.query(own, k=2, target_paths=paths, candidates=64)):
        assert len(ranked) == 2 and source.key not in {m.key for m in ranked}
    for source, ranked in zip(pool, index.query(own, k=1, target_paths=paths, candidates=64,
                                                exclude_self=False)):  # fmt: skip
        assert ranked[0].key == source.key and ranked[0].score == pytest.approx(1.0)


def test_real_cityscapes_frame_is_indexed_and_excluded(shared_data, tmp_path):
    (source,) = sources(CITYSCAPES_ROOT, split="val")
    build_index(str(tmp_path / "index"), [source], read_train_ids)
    index = ExemplarIndex.load(str(tmp_path / "index"))
    train_ids = read_train_ids(source)
    assert index.query([train_ids], k=1, target_paths=[source.label_path]) == [[]]
    (ranked,) = index.query([train_ids], k=1, target_paths=[source.label_path], exclude_self=False)
    assert ranked[0].key == source.key and ranked[0].score == pytest.approx(1.0)


def test_mapped_files_are_derived_once_and_follow_updates(tmp_path, index_cache):
    root, index_path = tmp_path / "pool", str(tmp_path / "index")
    write_pool(root, dict(list(POOL_LAYOUTS.items())[:3]))
    build_index(index_path, sources(root), read_train_ids)

    def folders():  # the mapped folders of this index, by the index.json they derive from
        metas = [json.loads(m.read_text()) for m in index_cache.glob("*/*/meta.json")]
        return [m["index"]["rows"] for m in metas if m["index"]["parts"][0]["file"] in parts]

    parts = {p["file"] for p in json.loads((tmp_path / "index" / META_FILE).read_text())["parts"]}
    assert len(ExemplarIndex.load(index_path)) == 3 and folders() == [3]
    ExemplarIndex.load(index_path)
    assert folders() == [3]  # opened again: the same files
    write_pool(root)
    build_index(index_path, sources(root), read_train_ids)
    assert len(ExemplarIndex.load(index_path)) == 5 and folders() == [5]  # the old one removed
