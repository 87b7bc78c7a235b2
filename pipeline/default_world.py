"""The augment job's built-in input: a small procedural world, exported on the fly.

With no ``--labels``, the job renders ``WORLD_TARGETS`` test-split layouts of
``amadapter.world`` as targets and uses ``WORLD_POOL`` val-split photos as the
exemplar pool (disjoint seed ranges, so no target can retrieve itself). Both are
written in the Cityscapes layout under ``OUTPUT/_world`` and then read by the
same readers as real data. The export is deterministic, so re-exporting on a
resumed run writes identical files.
"""

from __future__ import annotations

import os

from apache_beam.io.filesystems import FileSystems

from amadapter.world.export import export_world

WORLD_DIR = "_world"
WORLD_TARGETS = 16
WORLD_POOL = 48
TARGET_SPLIT = "test"
POOL_SPLIT = "val"
WORLD_SIZE = (64, 128)  # the bundled demo model's size; other sizes are resized by the job


def export_default_world(output: str, targets: int = WORLD_TARGETS, pool: int = WORLD_POOL) -> str:
    """Export targets and pool under ``output/_world`` (a local folder); return that root."""
    if FileSystems.get_scheme(output) is not None:
        raise ValueError(
            f"the built-in world is exported to a local folder; with --output {output} "
            "pass --labels and --exemplars (or --index) instead"
        )
    root = os.path.abspath(os.path.join(output, WORLD_DIR))
    export_world(root, targets, TARGET_SPLIT, *WORLD_SIZE)
    export_world(root, pool, POOL_SPLIT, *WORLD_SIZE)
    return root
