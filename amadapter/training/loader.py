"""A process's share of every step's global batch, through a ``torch.utils.data.DataLoader``.

The rows of step s's global batch (``data.RowSource``) are split over processes
and gradient-accumulation micro-steps: process p of P with A micro-steps owns the
contiguous rows ``[p * A * b, (p + 1) * A * b)`` with ``b = B / (P * A)``, its
micro-step m the m-th ``b`` of them. Each loader item is one micro-batch,
indexed ``step * A + m``, built from (seed, step, row) alone, so worker processes
and prefetching change when a batch is made, never what it holds, and a loader
started at the resume step continues exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import DataLoader, Dataset

from amadapter.training.data import RowSource


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world_size: int = 1
    accumulation: int = 1

    def micro_batch_size(self, batch_size: int) -> int:
        parts = self.world_size * self.accumulation
        if batch_size % parts:
            raise ValueError(f"the global batch size {batch_size} must be a multiple of processes x "
                             f"accumulation steps = {self.world_size} x {self.accumulation}")
        return batch_size // parts

    def rows(self, batch_size: int, micro: int) -> range:
        """The global row indices of micro-step ``micro`` of this process."""
        size = self.micro_batch_size(batch_size)
        first = (self.rank * self.accumulation + micro) * size
        return range(first, first + size)


class MicroBatches(Dataset):
    """Item ``step * A + m``: micro-batch m of ``step`` for one shard."""

    def __init__(self, source: RowSource, shard: Shard):
        shard.micro_batch_size(source.batch_size)  # fail at set-up, not in a worker
        self.source, self.shard = source, shard

    def __getitem__(self, index: int):
        step, micro = divmod(index, self.shard.accumulation)
        return self.source.batch(step, self.shard.rows(self.source.batch_size, micro))


def micro_batches(source: RowSource, shard: Shard, start_step: int, end_step: int, workers: int = 0,
                  prefetch_factor: int = 2, pin_memory: bool = False) -> DataLoader:
    """The micro-batches of steps ``[start_step, end_step)`` in order; ``workers`` > 0 builds
    them in that many processes, each up to ``prefetch_factor`` batches ahead."""
    accumulation = shard.accumulation
    return DataLoader(
        MicroBatches(source, shard),
        batch_size=None,  # items are whole micro-batches
        sampler=range(start_step * accumulation, end_step * accumulation),
        num_workers=workers,
        prefetch_factor=prefetch_factor if workers else None,
        pin_memory=pin_memory,
    )
