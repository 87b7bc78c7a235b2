"""Samples made by a test, written with the augment job's own shard writer.

The job writes each shard as it is rendered (one ``ShardResult`` per shard); a test that
makes its samples another way keys them with ``AssignShards`` and groups them here first.
"""

import apache_beam as beam

from storage.records import FailedInput, Sample
from storage.shards import read_stats_file, stats_path
from transforms.synthesis_request import ShardResult
from transforms.write_shard_results import WriteShardResults


def write_keyed_shards(keyed, output: str, prefix: str, label: str = "WriteShards"):
    """``PCollection[(shard, Sample | FailedInput)] -> PCollection[shard index]``."""
    return (
        keyed
        | f"{label}Group" >> beam.GroupByKey()
        | f"{label}Results" >> beam.MapTuple(_shard_result)
        | label >> beam.ParDo(WriteShardResults(output, prefix, "png", None))
    )


def shard_stats(output: str, prefix: str, index: int) -> dict:
    return read_stats_file(stats_path(output, prefix, index))


def _shard_result(index: int, elements) -> ShardResult:
    elements = list(elements)
    samples = tuple(e for e in elements if isinstance(e, Sample))
    failures = tuple(e for e in elements if isinstance(e, FailedInput))
    assert len(samples) + len(failures) == len(elements), elements
    return ShardResult(index, samples, failures)
