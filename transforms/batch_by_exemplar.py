"""Cut a shard's targets into synthesis batches that depend only on the shard's content.

Rule (``cut_batches``): sort the shard's targets by (exemplar key, target key);
walk the exemplar groups in that order, adding a whole group to the current
batch while it fits in ``batch_size``, else starting a new batch; a group larger
than ``batch_size`` is split into consecutive full batches. So targets that
share an exemplar are rendered together (one exemplar branch serves them all),
and a target's company in its batch is a function of its shard's content alone:
never of worker order, bundle boundaries or timing. That is what makes the
image bytes identical between single-process, multi-process and resumed runs
(see ``transforms.synthesis_handler``).
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

T = TypeVar("T")


def cut_batches(
    items: Sequence[T], exemplar_of: Callable[[T], str], key_of: Callable[[T], str], batch_size: int
) -> list[list[T]]:
    """Batches of at most ``batch_size`` items by the rule in the module docstring."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    ordered = sorted(items, key=lambda item: (exemplar_of(item), key_of(item)))
    groups: list[list[T]] = []
    for item in ordered:
        if groups and exemplar_of(groups[-1][0]) == exemplar_of(item):
            groups[-1].append(item)
        else:
            groups.append([item])
    batches: list[list[T]] = []
    current: list[T] = []
    for group in groups:
        if len(current) + len(group) > batch_size and current:
            batches.append(current)
            current = []
        while len(group) > batch_size:
            batches.append(group[:batch_size])
            group = group[batch_size:]
        current.extend(group)
    if current:
        batches.append(current)
    return batches
