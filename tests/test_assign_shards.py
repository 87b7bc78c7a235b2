"""Shard assignment on the DirectRunner: deterministic, unique, full shards, incremental."""

import json
import os
import random
import tempfile
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from transforms.assign_shards import BUCKETS, AssignShards, FreeShards, assign_shards, bucket_of
from transforms.expand_samples import label_key
from storage.records import FailedInput
from storage.shards import stats_path, write_shard

SHARD_SIZE = 7


def inputs(keys):
    return [FailedInput(k, f"/data/{k}.png", "unreadable_image", "stand-in input") for k in keys]


def sample_keys(maps: int, samples: int, prefix: str = "frame") -> list[str]:
    return [f"{prefix}{m:04d}-s{s}" for m in range(maps) for s in range(samples)]


def beam_assign(elements, finished=None, runner_args=()):
    """Run AssignShards on ``elements``; returns {key: shard}."""
    with tempfile.TemporaryDirectory() as folder:
        result = os.path.join(folder, "placed.json")
        with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner", *runner_args])) as p:
            (
                p
                | beam.Create(elements)
                | AssignShards(SHARD_SIZE, finished, group=label_key)
                | beam.MapTuple(lambda shard, element: (element.key, shard))
                | beam.combiners.ToDict()
                | beam.Map(lambda placed: Path(result).write_text(json.dumps(placed)))
            )
        return json.loads(Path(result).read_text())


def test_beam_matches_the_rule_is_unique_and_fills_every_shard_but_the_last():
    keys = sample_keys(30, 3)  # 90 inputs -> 13 shards of 7 (the last holds 6)
    shuffled = keys[:]
    random.Random(0).shuffle(shuffled)
    placed = beam_assign(inputs(shuffled))
    assert placed == assign_shards(keys, SHARD_SIZE, group=label_key)
    assert sorted(placed) == sorted(keys)  # every input exactly once
    sizes = [list(placed.values()).count(i) for i in range(13)]
    assert sizes == [SHARD_SIZE] * 12 + [6]
    # The samples of one label map sit next to each other: at most two shards each.
    for m in range(30):
        assert len({placed[f"frame{m:04d}-s{s}"] for s in range(3)}) <= 2


def test_assignment_depends_on_the_key_set_only():
    keys = sample_keys(20, 2)
    first = assign_shards(keys, SHARD_SIZE, group=label_key)
    assert first == assign_shards(reversed(keys), SHARD_SIZE, group=label_key)
    assert beam_assign(inputs(keys), runner_args=("--direct_num_workers=2",)) == first
    assert bucket_of("frame0001") == bucket_of("frame0001") < BUCKETS


def test_duplicate_keys_are_refused():
    with pytest.raises(ValueError, match="duplicate"):
        assign_shards(["k", "j", "k"], 2)
    with pytest.raises(Exception, match="duplicate sample key 'frame0000-s0'"):
        beam_assign(inputs(sample_keys(3, 1) + ["frame0000-s0"]))


def finished_output(tmp_path, placed: dict, shards) -> dict:
    """Write the given shards of ``placed`` as finished (stats files); {index: stats path}."""
    for index in shards:
        keys = sorted(k for k, s in placed.items() if s == index)
        write_shard(str(tmp_path), "aug", index, [], inputs(keys))
    return {i: stats_path(str(tmp_path), "aug", i) for i in shards}


def test_a_grown_input_set_keeps_finished_shards_and_gets_new_ones(tmp_path):
    old = sample_keys(10, 2)  # 20 inputs: shards 0, 1, 2 (the last holds 6)
    first = assign_shards(old, SHARD_SIZE, group=label_key)
    finished = finished_output(tmp_path, first, range(3))
    grown = old + sample_keys(6, 2, prefix="new")
    placed = beam_assign(inputs(grown), finished)
    assert {k: placed[k] for k in old} == first  # old keys keep their shard
    new = {k: s for k, s in placed.items() if k not in first}
    assert sorted(set(new.values())) == [3, 4] and list(new.values()).count(3) == SHARD_SIZE
    assert new == assign_shards(new, SHARD_SIZE, group=label_key, free=FreeShards((), 3))


def test_after_a_kill_the_unfinished_shards_get_the_same_keys_again(tmp_path):
    keys = sample_keys(16, 2)  # 32 inputs: shards 0..4
    uninterrupted = assign_shards(keys, SHARD_SIZE, group=label_key)
    finished = finished_output(tmp_path, uninterrupted, [1, 3])  # a kill left 0, 2, 4 unfinished
    assert beam_assign(inputs(keys), finished) == uninterrupted


def test_a_key_removed_from_the_input_leaves_its_shard_alone(tmp_path):
    keys = sample_keys(7, 2)  # 14 inputs: shards 0, 1
    first = assign_shards(keys, SHARD_SIZE, group=label_key)
    finished = finished_output(tmp_path, first, range(2))
    removed = next(k for k, s in first.items() if s == 0)
    placed = beam_assign(inputs([k for k in keys if k != removed]), finished)
    assert placed == {k: s for k, s in first.items() if k != removed}
