"""The batching rule of the synthesis step: a function of the shard's content alone."""

import random

import pytest

from amadapter.io.keys import safe_key
from transforms.batch_by_exemplar import cut_batches
from transforms.expand_samples import sample_key, sample_seed


def cut(items, size):
    return cut_batches(items, lambda i: i[0], lambda i: i[1], size)


@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_batches_hold_every_item_once_and_keep_exemplars_together(size):
    rng = random.Random(size)
    items = [(f"ex{rng.randrange(6)}", f"key{i:03d}") for i in range(40)]
    batches = cut(items, size)
    assert sorted(i for b in batches for i in b) == sorted(items)
    assert all(1 <= len(b) <= size for b in batches)
    for exemplar in {e for e, _ in items}:
        holding = [b for b in batches if any(e == exemplar for e, _ in b)]
        count = sum(e == exemplar for e, _ in items)
        assert len(holding) == -(-count // size)  # as few batches as the group needs
    assert len(batches) <= -(-len(items) // size) + len({e for e, _ in items})


def test_batches_do_not_depend_on_arrival_order():
    items = [(f"ex{i % 5}", f"key{i:03d}") for i in range(30)]
    shuffled = items[:]
    random.Random(1).shuffle(shuffled)
    assert cut(items, 4) == cut(shuffled, 4)


def test_seeds_come_from_key_and_run_seed_only():
    key = sample_key(safe_key("frame", "val/city/frame"), 2)
    assert key.endswith("-s2") and sample_seed(key, 0) == sample_seed(key, 0)
    assert sample_seed(key, 0) != sample_seed(key, 1) != sample_seed(sample_key(key, 3), 0)
    assert 0 <= sample_seed(key, 0) < 2**63
