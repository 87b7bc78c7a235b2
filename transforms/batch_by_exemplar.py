"""Cut a shard's targets into synthesis batches that depend only on the shard's content.

Rule (``cut_batches``): group the targets by exemplar (by exemplar set, for
targets that read several; each group sorted by target key); split a group larger than ``batch_size`` into full batches of
consecutive keys plus a remainder; then pack the groups, largest first (ties by
exemplar key), each into the first batch with room for all of it, else into a
new batch (first-fit decreasing). So targets that share an exemplar are
rendered together (one exemplar branch serves them all), batches are nearly
full (fewer model calls), and a target's company in its batch is a function of
its shard's content alone: never of worker order, bundle boundaries or timing.
That is what makes the image bytes identical between single-process,
multi-process and resumed runs (see ``transforms.synthesis_handler``).
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
    groups: dict[str, list[T]] = {}
    for item in sorted(items, key=key_of):
        groups.setdefault(exemplar_of(item), []).append(item)
    batches: list[list[T]] = []
    pieces: list[tuple[str, list[T]]] = []
    for exemplar, group in sorted(groups.items()):
        full = len(group) - len(group) % batch_size
        batches.extend(group[i : i + batch_size] for i in range(0, full, batch_size))
        if full < len(group):
            pieces.append((exemplar, group[full:]))
    for _, piece in sorted(pieces, key=lambda p: (-len(p[1]), p[0])):
        home = next((b for b in batches if len(b) + len(piece) <= batch_size), None)
        if home is None:
            batches.append(list(piece))
        else:
            home.extend(piece)
    return batches
