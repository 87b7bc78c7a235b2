"""Several exemplars per target: which exemplar lends which part of the target.

A target may read K >= 1 exemplars at once ("road and sky from this rainy frame,
vehicles from that night frame"). Each ``ExemplarRegion`` names an exemplar and
what it lends: the pixels of some train IDs, a painted mask, or "the rest" (every
pixel no other region claims). ``region_slots`` turns a target's regions into a
slot map: per pixel, which of the target's distinct exemplars its queries may
attend to (``NO_SLOT``: none, only the target's own tokens). The attention
processors restrict each query to its slot's exemplar tokens, and the categorical
cost C and the adapter see the same restriction (``attention_processors``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from amadapter.models.attention_processors import NO_SLOT
from amadapter.io.errors import ExemplarRegionError
from amadapter.io.labels import NUM_CLASSES

UNASSIGNED = ("first", "none")  # what pixels no region claims read: the first exemplar, or none


@dataclass(frozen=True)
class ExemplarRegion:
    """``exemplar`` (an index into the call's exemplars) lends the target pixels of
    ``classes`` (train IDs), or of ``mask`` ((H, W) bool at the target label map's
    size), or, with neither, every pixel no other region claims."""

    exemplar: int
    classes: tuple[int, ...] | None = None
    mask: np.ndarray | None = None

    @property
    def is_rest(self) -> bool:
        return self.classes is None and self.mask is None


def region_slots(
    labels: np.ndarray, regions: Sequence[ExemplarRegion], unassigned: str = "first", name: str = "target"
) -> tuple[list[int], np.ndarray]:
    """(the target's distinct exemplars in order of first use, slot map (H, W) uint8).

    Slot j means "reads exemplar ``distinct[j]``". Raises ``ExemplarRegionError``
    naming ``name`` for overlapping assignments (two regions claiming a class or a
    pixel), unknown classes, wrong mask sizes, more than one rest region, or no
    region at all."""
    if unassigned not in UNASSIGNED:
        raise ValueError(f"unassigned must be one of {UNASSIGNED}, got {unassigned!r}")
    if not regions:
        raise ExemplarRegionError(name, "no exemplar regions")
    distinct: list[int] = []
    slots = np.full(labels.shape, NO_SLOT, np.uint8)
    claimed_by = np.full(labels.shape, -1, np.int32)
    claimed_classes: dict[int, int] = {}
    rest = [i for i, r in enumerate(regions) if r.is_rest]
    if len(rest) > 1:
        raise ExemplarRegionError(name, f"regions {rest[0]} and {rest[1]} are both 'rest'")
    for i, region in enumerate(regions):
        if region.exemplar not in distinct:
            distinct.append(region.exemplar)
        if region.is_rest:
            continue
        if region.classes is not None and region.mask is not None:
            raise ExemplarRegionError(name, f"region {i} gives both classes and a mask")
        if region.classes is not None:
            for c in region.classes:
                if not 0 <= int(c) < NUM_CLASSES:
                    raise ExemplarRegionError(name, f"region {i}: unknown train ID {c}")
                if int(c) in claimed_classes:
                    raise ExemplarRegionError(
                        name, f"overlapping assignments: regions {claimed_classes[int(c)]} and {i} both lend class {c}"
                    )
                claimed_classes[int(c)] = i
            pixels = np.isin(labels, np.asarray(region.classes, dtype=labels.dtype))
        else:
            pixels = np.asarray(region.mask, dtype=bool)
            if pixels.shape != labels.shape:
                raise ExemplarRegionError(
                    name, f"region {i}: mask is {pixels.shape[0]}x{pixels.shape[1]}, the label map "
                    f"{labels.shape[0]}x{labels.shape[1]}"
                )
        overlap = pixels & (claimed_by >= 0)
        if overlap.any():
            other = int(claimed_by[overlap][0])
            raise ExemplarRegionError(
                name, f"overlapping assignments: regions {other} and {i} both lend {int(overlap.sum())} pixels"
            )
        claimed_by[pixels] = i
        slots[pixels] = distinct.index(region.exemplar)
    fallback = regions[rest[0]].exemplar if rest else (distinct[0] if unassigned == "first" else None)
    if fallback is not None:
        slots[slots == NO_SLOT] = distinct.index(fallback)
    return distinct, slots
