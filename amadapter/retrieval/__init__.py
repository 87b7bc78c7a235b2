"""Exemplar retrieval: for each target label map, the pool entry whose layout matches best.

Ours (the paper never published its rule): the score is
class-wise IoU on 32x64 nearest-downsampled maps plus coverage of the target's
classes (``score.py``). A query scans the whole pool with one int8 product over
coarse class placements (``candidates.py``), bounds the exact score of the
candidates from per-cell class counts, and scores exactly only those a bound
says can still win (``index.py``). The index is built with ``build_index`` (or
as a Beam job, ``jobs.build_index --runner``) and stored as Parquet
(``store.py``); ``ExemplarIndex`` maps a local copy of it once per machine
(``mapped.py``) and answers batched queries.
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
