"""The augment job where one model serves concurrent callers: Beam's multi-threaded
DirectRunner (one model shared by a process's threads) and multi-process workers
with ``--model-copies 1`` (one model process whose proxy serves every worker's calls
concurrently). Both must write the same bytes as a single-process run."""

import pytest

from jobs.augment import run
from tests.test_augment import inputs, shard_members  # noqa: F401 (fixture)

SMALL_SHARDS = ["--shard-size", "2", "--batch-size", "2"]  # more shards in flight at once


@pytest.fixture(scope="module")
def sequential(inputs, tmp_path_factory):  # noqa: F811 (the imported fixture)
    output = str(tmp_path_factory.mktemp("sequential"))
    return output, run(inputs["argv"] + SMALL_SHARDS + ["--output", output])


@pytest.mark.parametrize(
    "engine",
    [
        ["--direct_running_mode=multi_threading", "--direct_num_workers=4"],
        ["--direct_running_mode=multi_processing", "--direct_num_workers=2", "--model-copies", "1"],
    ],
    ids=["threads", "processes_one_model_copy"],
)
def test_concurrent_callers_of_one_model_write_the_sequential_bytes(
    inputs, sequential, engine, tmp_path  # noqa: F811
):
    output = str(tmp_path / "out")
    summary = run(inputs["argv"] + SMALL_SHARDS + ["--output", output] + engine)
    reference = sequential[1]
    assert (summary.inputs, summary.written, summary.failed) == (
        reference.inputs,
        reference.written,
        reference.failed,
    )
    assert summary.failure_codes == reference.failure_codes  # no synthesis_failed rows
    members = shard_members(output)
    assert len(members) > 0 and members == shard_members(sequential[0])
