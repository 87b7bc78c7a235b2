"""Exemplar retrieval: for each target label map, the pool entry whose layout matches best.

Ours (the paper never published its rule; DESIGN.md section 5): a coarse
per-cell class-placement descriptor finds candidates fast (``candidates.py``),
an exact score re-ranks them (``score.py``: class-wise IoU on 32x64 nearest-
downsampled maps plus coverage of the target's classes). The index is built
with ``build_index`` and stored as Parquet (``store.py``); ``ExemplarIndex``
loads it once and answers batched queries.
"""

from amadapter.retrieval.build import BuildReport, build_index
from amadapter.retrieval.frames import frame_id
from amadapter.retrieval.index import ExemplarIndex, ExemplarMatch, draw
from amadapter.retrieval.score import layout_scores, layout_scores_against_pool

__all__ = [
    "BuildReport",
    "ExemplarIndex",
    "ExemplarMatch",
    "build_index",
    "draw",
    "frame_id",
    "layout_scores",
    "layout_scores_against_pool",
]
