"""What a failed model call becomes: ``synthesis_failed`` rows for the targets of its batch,
or, for a failure every later batch would repeat, a ``RunStoppingError`` that stops the run.

A run-stopping error travels as a value, not as an exception through RunInference's
dead-letter output (which keeps only an exception's type and repr): the handler returns
it in the shard's ``ShardResult.stop`` and the graph's next step raises it
(``raise_if_run_stopping``), before anything of that shard is written.
"""

from __future__ import annotations

from typing import Sequence

from storage.records import FailedInput
from transforms.synthesis_request import ShardResult, SynthesisRequest

SYNTHESIS_FAILED = "synthesis_failed"  # FailedInput.error_code of targets whose batch failed


class RunStoppingError(RuntimeError):
    """A failure that every later batch would repeat: the run stops instead of
    writing ``synthesis_failed`` rows (see ``raise_if_run_stopping``)."""


class BatchTooLargeError(RunStoppingError):
    """Out of memory in the first model call of a worker: the batch (or size) is too large."""


def raise_if_run_stopping(result: ShardResult) -> ShardResult:
    """``result`` itself, unless the handler stopped the run there: then its error is raised."""
    if result.stop is not None:
        raise result.stop
    return result


def synthesis_failures(batch: Sequence[SynthesisRequest], error: str) -> list[FailedInput]:
    """One ``FailedInput`` per target of a batch whose model call raised ``error`` (its text)."""
    return [
        FailedInput(
            r.target.key,
            r.target.source,
            SYNTHESIS_FAILED,
            f"{SYNTHESIS_FAILED}: {r.target.source}: model call failed: {error}",
        )
        for r in batch
    ]
