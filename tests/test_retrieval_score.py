"""The exact layout score, its bounds and the coarse descriptor, on hand-made layouts."""

import numpy as np
import pytest

from amadapter import world
from amadapter.io.labels import IGNORE_ID, NUM_CLASSES
from amadapter.retrieval.descriptor import (
    BOUND_GRID,
    COARSE_DIM,
    COARSE_GRID,
    DESCRIPTOR_SCALE,
    MAP_SHAPE,
    SMALL_IGNORE,
    cell_counts,
    coarse_counts,
    coarse_descriptors,
    downsample_nearest,
)
from amadapter.retrieval.frames import frame_id
from amadapter.retrieval.score import (
    W_COVERAGE,
    W_IOU,
    class_areas,
    TargetScorer,
    layout_scores,
    layout_scores_against_pool,
)

ROAD, SIDEWALK, BUILDING, POLE, SKY, PERSON, CAR = 0, 1, 2, 5, 10, 11, 13


def street(height=64, width=128, boxes=()):
    """Sky over road, then ``boxes`` of (class, top, bottom, left, right) in fractions."""
    m = np.full((height, width), SKY, np.uint8)
    m[height // 2 :] = ROAD
    for cls, top, bottom, left, right in boxes:
        m[int(top * height) : int(bottom * height), int(left * width) : int(right * width)] = cls
    return m


def naive_score(t: np.ndarray, e: np.ndarray) -> float:
    """The formula of score.py, written out pixel by pixel over classes."""
    ious, present = [], 0
    for c in range(NUM_CLASSES):
        inter = np.sum((t == c) & (e == c))
        union = np.sum((t == c) | (e == c))
        if union:
            present += 1
            ious.append(inter / union)
    miou = sum(ious) / max(present, 1)
    labelled = np.isin(t, range(NUM_CLASSES))
    shown = np.isin(t, np.unique(e[e < NUM_CLASSES]))
    coverage = (shown & labelled).sum() / labelled.sum() if labelled.any() else 1.0
    return W_IOU * miou + W_COVERAGE * coverage


def test_score_by_hand_on_a_tiny_map():
    # road|sidewalk split at column 2 vs column 3: road IoU 4/6, sidewalk IoU 2/4, coverage 1.
    target = np.array([[0, 0, 1, 1], [0, 0, 1, 1]], np.uint8)
    exemplar = np.array([[0, 0, 0, 1], [0, 0, 0, 1]], np.uint8)
    score = layout_scores(target[None], exemplar[None, None])[0, 0]
    assert score == pytest.approx(W_IOU * (4 / 6 + 2 / 4) / 2 + W_COVERAGE * 1.0)
    # An exemplar without sidewalk: road IoU 4/8, sidewalk 0; it covers only the road half.
    all_road = np.zeros((2, 4), np.uint8)
    score = layout_scores(target[None], all_road[None, None])[0, 0]
    assert score == pytest.approx(W_IOU * (0.5 + 0.0) / 2 + W_COVERAGE * 0.5)


def test_ignore_counts_in_neither_term():
    target = np.array([[0, 0, SMALL_IGNORE, SMALL_IGNORE]], np.uint8)
    exemplar = np.array([[0, 0, 1, 1]], np.uint8)
    # road IoU 2/2, sidewalk only in the exemplar: IoU 0 over 2 classes; coverage 1.
    assert layout_scores(target[None], exemplar[None, None])[0, 0] == pytest.approx(
        W_IOU * 0.5 + W_COVERAGE
    )
    nothing = np.full((1, 4), SMALL_IGNORE, np.uint8)
    assert layout_scores(nothing[None], exemplar[None, None])[0, 0] == pytest.approx(W_COVERAGE)


def test_identical_layout_scores_one_whatever_the_size():
    target = street(128, 256, [(CAR, 0.55, 0.8, 0.1, 0.3), (POLE, 0.2, 0.6, 0.8, 0.82)])
    same_smaller = street(64, 128, [(CAR, 0.55, 0.8, 0.1, 0.3), (POLE, 0.2, 0.6, 0.8, 0.82)])
    small_t, small_e = downsample_nearest(target), downsample_nearest(same_smaller)
    assert small_t.shape == MAP_SHAPE
    assert layout_scores(small_t[None], small_e[None, None])[0, 0] == pytest.approx(1.0)


def test_the_matching_layout_wins():
    """Car on the left: an exemplar with a car on the left beats one with the car on the
    right, which beats (coverage) one without a car."""
    target = downsample_nearest(street(boxes=[(CAR, 0.55, 0.85, 0.05, 0.35)]))
    left = downsample_nearest(street(boxes=[(CAR, 0.6, 0.85, 0.1, 0.35)]))
    right = downsample_nearest(street(boxes=[(CAR, 0.55, 0.85, 0.65, 0.95)]))
    none = downsample_nearest(street())
    scores = layout_scores(target[None], np.stack([right, none, left])[None])[0]
    assert scores.argmax() == 2 and scores[0] > scores[1]


def test_rerank_and_reference_agree_with_the_formula():
    rng = np.random.default_rng(0)
    maps = np.stack([downsample_nearest(world.layout(int(s), 64, 128)) for s in range(40)])
    maps[3, :4] = SMALL_IGNORE  # some ignore, as under an ego-vehicle hood
    targets, pool = maps[:5], maps[5:]
    reference = layout_scores_against_pool(targets, pool, chunk=16)  # several chunks
    rows = rng.integers(0, len(pool), (5, 7))
    rerank = layout_scores(targets, pool[rows], class_areas(pool)[rows])
    np.testing.assert_allclose(rerank, np.take_along_axis(reference, rows, 1), rtol=1e-6)
    for b in range(5):
        for j in (0, 11, 34):
            assert reference[b, j] == pytest.approx(naive_score(targets[b], pool[j]), rel=1e-6)


def test_downsample_keeps_real_ids_and_maps_ignore():
    m = street(100, 300, [(PERSON, 0.6, 0.9, 0.5, 0.52)])
    m[:10] = IGNORE_ID
    small = downsample_nearest(m)
    assert set(np.unique(small)) <= {ROAD, SKY, PERSON, SMALL_IGNORE}
    assert (small[0] == SMALL_IGNORE).all()


def test_cell_counts_and_coarse_blocks_place_each_class():
    small = downsample_nearest(street(boxes=[(CAR, 0.55, 0.85, 0.05, 0.35)]))
    counts = cell_counts(small[None])[0]
    assert counts.shape == (NUM_CLASSES, BOUND_GRID[0] * BOUND_GRID[1])
    np.testing.assert_array_equal(counts.sum(1), class_areas(small[None])[0])
    d = coarse_descriptors(counts[None])[0].astype(np.float32)
    assert d.shape == (COARSE_DIM,)
    blocks = d.reshape(NUM_CLASSES, -1) / DESCRIPTOR_SCALE
    norms = np.linalg.norm(blocks, axis=1)
    shown = {ROAD, SKY, CAR}
    for c in range(NUM_CLASSES):
        assert norms[c] == (pytest.approx(1.0, abs=0.02) if c in shown else 0.0)
    # The car's blocks are non-zero only in the lower-left cells.
    car = blocks[CAR].reshape(COARSE_GRID)
    assert car[0].sum() == 0 and car[:, 2:].sum() == 0 and car[1, 0] > 0
    assert counts[CAR].reshape(BOUND_GRID)[:2].sum() == 0


def test_target_scorer_is_exact_and_its_bounds_are_never_below():
    maps = np.stack([downsample_nearest(world.layout(int(s), 64, 128)) for s in range(60)])
    maps[7, :5] = SMALL_IGNORE
    maps[8] = SMALL_IGNORE  # a target with no labelled sample: coverage 1 with everything
    pool = maps[5:]
    reference = layout_scores_against_pool(maps[:9], pool)
    counts, areas = cell_counts(maps), class_areas(maps)
    coarse = coarse_counts(counts)
    shown = (areas[5:] > 0).sum(1)
    for t in range(9):
        scorer = TargetScorer(maps[t], counts[t], coarse[t])
        exact = scorer.exact(pool, areas[5:], shown)
        np.testing.assert_allclose(exact, reference[t], rtol=1e-6)
        tight = scorer.bounds(counts[5:], areas[5:], shown, coarse=False)
        loose = scorer.bounds(coarse[5:], areas[5:], shown, coarse=True)
        assert (tight >= exact - 1e-6).all() and (loose >= tight - 1e-6).all()
        if t < 8:  # the bounds are informative: well below 1 on average
            assert (tight - exact).mean() < 0.1 and (loose - exact).mean() < 0.25
    same = TargetScorer(maps[0], counts[0], coarse[0]).bounds(
        counts[:1], areas[:1], (areas[:1] > 0).sum(1), coarse=False
    )
    assert same[0] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    "path, frame",
    [  # fmt: skip
        ("/d/gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png",
         "frankfurt_000000_000294"),
        ("gs://b/leftImg8bit/train/bad-honnef/bad-honnef_000001_000019_leftImg8bit.png",
         "bad-honnef_000001_000019"),
        ("frankfurt_000000_000294-0123456789", "frankfurt_000000_000294"),
        ("/bdd/labels/sem_seg/masks/val/7d06fefd-f7be05a6.png", "7d06fefd-f7be05a6"),
        ("/bdd/labels/sem_seg/colormaps/val/7d06fefd-f7be05a6.png", "7d06fefd-f7be05a6"),
        ("/any/folder/scene.label.png", "scene"),
    ],
)
def test_frame_id(path, frame):
    assert frame_id(path) == frame
